"""Creates the stack of template.yaml in moto's CloudFormation, offline.

aws-sam-translator (a cfn-lint dependency) turns the SAM template into plain CloudFormation, as
`sam deploy` would, with each function's code at a placeholder object; moto's CloudFormation then
creates it. moto is lenient, so this is no full deployment check, but it catches what linting does
not: circular dependencies (e.g. between a KMS key whose policy names a function's generated role
and that role's policy naming the key), broken references, shapes CloudFormation cannot create.
Types moto does not model (API Gateway v2, Glue, Scheduler, bucket policies) stand in as
placeholders: their references still resolve, their properties are not checked.
Exits non-zero, naming the failed resources, unless the stack reaches CREATE_COMPLETE.
"""

import io
import json
import os
import sys
import warnings
import zipfile

for name, value in {
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
}.items():
    os.environ.setdefault(name, value)

import boto3  # noqa: E402
from cfnlint.decode import cfn_yaml  # noqa: E402
from moto import mock_aws  # noqa: E402
from samtranslator.translator.transform import transform  # noqa: E402

CODE_BUCKET, CODE_KEY = "auditline-code", "functions.zip"


def with_code_at_placeholder(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "CodeUri":
                node[key] = f"s3://{CODE_BUCKET}/{CODE_KEY}"
            else:
                with_code_at_placeholder(value)
    elif isinstance(node, list):
        for value in node:
            with_code_at_placeholder(value)


def condition_values(template, parameters):
    """Each condition's value for these parameter values (defaults otherwise)."""
    values = {name: str(spec.get("Default", "")) for name, spec in template.get("Parameters", {}).items()}
    values.update(parameters)
    conditions = template.get("Conditions", {})

    def evaluate(node):
        if isinstance(node, dict):
            (fn, args), = node.items()
            if fn == "Fn::Equals":
                return str(evaluate(args[0])) == str(evaluate(args[1]))
            if fn == "Fn::Not":
                return not evaluate(args[0])
            if fn == "Fn::And":
                return all(evaluate(a) for a in args)
            if fn == "Fn::Or":
                return any(evaluate(a) for a in args)
            if fn == "Condition":
                return evaluate(conditions[args])
            if fn == "Ref":
                return values[args]
            raise ValueError(f"condition function {fn} is not emulated")
        return node

    return {name: evaluate(node) for name, node in conditions.items()}


def without_absent_list_items(node, conditions):
    """CloudFormation drops a list item that is `Fn::If [c, x, AWS::NoValue]` with c false; moto
    keeps it as null (and fails on it), so resolve those here."""
    if isinstance(node, dict):
        for value in node.values():
            without_absent_list_items(value, conditions)
    elif isinstance(node, list):
        kept = []
        for item in node:
            branches = item.get("Fn::If") if isinstance(item, dict) and len(item) == 1 else None
            if branches and {"Ref": "AWS::NoValue"} in branches[1:]:
                chosen = branches[1] if conditions[branches[0]] else branches[2]
                if chosen != {"Ref": "AWS::NoValue"}:
                    kept.append(chosen)
            else:
                kept.append(item)
        node[:] = kept
        for item in node:
            without_absent_list_items(item, conditions)


class NoManagedPolicies:
    def load(self):
        return {}


# Every condition of the template on one side or the other in one of these runs.
RUNS = [
    {"JwtSecret": "x" * 40},
    {"JwtSecret": "x" * 40, "ViewerOrigin": "https://audit.example.com", "CorsAllowedOrigins": "https://dash.example.com,http://localhost:3000", "AuditLogReads": "true", "ArchiveObjectLockDays": "7", "AuthorizerMaxConcurrency": "0",
     "IngestReservedConcurrency": "0", "FanoutReservedConcurrency": "0"},
]


def main(path):
    template = cfn_yaml.load(path)
    with_code_at_placeholder(template)
    plain = json.loads(json.dumps(transform(template, {}, NoManagedPolicies()), default=str))
    warnings.simplefilter("ignore")
    for parameters in RUNS:
        create(plain, parameters)


def create(template, parameters):
    plain = json.loads(json.dumps(template))
    without_absent_list_items(plain, condition_values(plain, parameters))
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=CODE_BUCKET)
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as z:
            z.writestr("bootstrap", "")
        s3.put_object(Bucket=CODE_BUCKET, Key=CODE_KEY, Body=archive.getvalue())
        cloudformation = boto3.client("cloudformation")
        try:
            cloudformation.create_stack(
                StackName="auditline",
                TemplateBody=json.dumps(plain),
                Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
                Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            )
        except RecursionError as error:
            cycle, frame = [], error.__traceback__
            while frame:
                logical_id = frame.tb_frame.f_locals.get("logical_id")
                if logical_id and logical_id not in cycle:
                    cycle.append(logical_id)
                frame = frame.tb_next
            sys.exit(f"template.yaml: circular dependency between {', '.join(cycle)}")
        stack = cloudformation.describe_stacks(StackName="auditline")["Stacks"][0]
        failed = [
            f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}"
            for e in cloudformation.describe_stack_events(StackName="auditline")["StackEvents"]
            if "FAILED" in e.get("ResourceStatus", "")
        ]
        if stack["StackStatus"] != "CREATE_COMPLETE" or failed:
            sys.exit(f"template.yaml: {stack['StackStatus']}; " + "; ".join(failed))
        count = len(cloudformation.list_stack_resources(StackName="auditline")["StackResourceSummaries"])
        changed = ", ".join(f"{k}={v}" for k, v in parameters.items() if k != "JwtSecret") or "defaults"
        print(f"template.yaml ({changed}): {count} resources created in moto's CloudFormation")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "template.yaml")
