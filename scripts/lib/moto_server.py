"""Starts moto's server (the local DynamoDB API the tests use) with one repair to its
TransactWriteItems bookkeeping.

moto makes a transaction all-or-nothing by deep-copying every table the transaction touches before
applying it, and putting the copies back on failure. That costs time proportional to the whole table
on every transactional write (1,000 writes to one table took about a minute), and, because requests
run on parallel threads, a rollback can silently undo a concurrent transaction's writes.

Here the snapshot is of just the items the transaction names, plus the length of each table's stream,
and transactions are serialised. A failed transaction is still rolled back completely (its items and
its stream records), so the semantics the tests rely on are moto's, unchanged; only the cost is not.

Single-item writes (PutItem, UpdateItem, DeleteItem) and reads (GetItem, Query, BatchGetItem) take
the same lock. DynamoDB documents serializable isolation between TransactWriteItems and standard
writes, and read-committed reads that never see a transaction half-applied; moto, on parallel
threads, interleaves them, and a read can even see the item of a transaction that is then rolled
back. The seal relies on the documented guarantees (a write checks the seal marker in its
transaction; a seal moves the marker with UpdateItem, then reads), so the emulator provides them.
Nothing else in moto is touched.
"""

import copy
import sys
import threading

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.server import main

_deepcopy = copy.deepcopy


class _CopyKeepingTables:
    """Stands in for the `copy` module inside moto.dynamodb.models: tables are no longer copied."""

    @staticmethod
    def deepcopy(obj, memo=None):
        return obj if isinstance(obj, Table) else _deepcopy(obj, memo)


dynamodb_models.copy = _CopyKeepingTables
_original_transact_write_items = DynamoDBBackend.transact_write_items
# Reentrant: moto applies a transaction through the very put_item and update_item locked below.
_transactions = threading.RLock()


def _key_of(table, op):
    attrs = op.get("Item") or op.get("Key") or {}
    if table.hash_key_attr not in attrs:
        return None
    hash_key = DynamoType(attrs[table.hash_key_attr])
    range_key = None
    if table.range_key_attr is not None:
        if table.range_key_attr not in attrs:
            return None
        range_key = DynamoType(attrs[table.range_key_attr])
    return hash_key, range_key


def _restore(table, hash_key, range_key, old):
    if range_key is None:
        if old is None:
            table.items.pop(hash_key, None)
        else:
            table.items[hash_key] = old
        return
    if old is None:
        table.items.get(hash_key, {}).pop(range_key, None)
        if hash_key in table.items and not table.items[hash_key]:
            del table.items[hash_key]
    else:
        table.items[hash_key][range_key] = old


def transact_write_items(self, transact_items):
    with _transactions:
        saved, stream_lengths = [], []
        for entry in transact_items:
            _, op = next(iter(entry.items()))
            table = self.tables.get(op.get("TableName"))
            if table is None:
                continue
            key = _key_of(table, op)
            if key is not None:
                saved.append((table, *key, _deepcopy(table.get_item(*key))))
            if table.stream_shard is not None:
                stream_lengths.append((table, len(table.stream_shard.items)))
        try:
            return _original_transact_write_items(self, transact_items)
        except BaseException:
            for table, hash_key, range_key, old in reversed(saved):
                _restore(table, hash_key, range_key, old)
            for table, length in stream_lengths:
                del table.stream_shard.items[length:]
            raise


DynamoDBBackend.transact_write_items = transact_write_items


def _serialised(write):
    def locked(self, *args, **kwargs):
        with _transactions:
            return write(self, *args, **kwargs)

    return locked


for _name in ("put_item", "update_item", "delete_item", "get_item", "query", "batch_get_item"):
    setattr(DynamoDBBackend, _name, _serialised(getattr(DynamoDBBackend, _name)))

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
