//! Checkpoints: signed, chained commitments to one tenant's sealed periods.
