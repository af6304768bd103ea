//! Merkle trees as RFC 6962 (and RFC 9162) define them: leaves hashed with a `0x00` prefix, inner
//! nodes with `0x01`, and trees of any size split at the largest power of two below it. Inclusion
//! and consistency proofs are built from any [`Nodes`] source and checked with the RFC's
//! algorithms, which need nothing but the proof.
//!
//! Storage keeps a tree as **tiles**: tile (L, t) holds the hashes of the complete subtrees of
//! 256^L leaves numbered 256·t … 256·t + 255 (the last tile of a level may hold fewer). Any subtree
//! hash a proof needs is folded from at most one tile per 8 levels, so a proof of a tree of a
//! million leaves reads 3 tiles, whatever the tree's size.

use std::collections::BTreeSet;

use super::Hash;

/// The hash of a leaf's data.
pub fn leaf_hash(data: &[u8]) -> Hash {
    Hash::of(&[&[0x00], data])
}

/// The hash of an inner node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Hash::of(&[&[0x01], &left.0, &right.0])
}

/// The tree's root over leaf hashes; the empty tree's is SHA-256 of nothing.
pub fn root(leaves: &[Hash]) -> Hash {
    if leaves.is_empty() {
        return Hash::of(&[]);
    }
    subtree(&Levels::new(leaves.to_vec()), 0, leaves.len() as u64)
}

/// The largest power of two smaller than `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// Hashes of aligned complete subtrees: `node(level, index)` covers leaves
/// `index·2^level … (index+1)·2^level − 1`. `None` when the source does not hold it.
pub trait Nodes {
    fn node(&self, level: u32, index: u64) -> Option<Hash>;
}

/// MTH(D[start:end]) with absolute leaf numbers. Ranges come from the RFC's recursion, so a
/// power-of-two range starts at a multiple of its size: one stored node.
fn subtree(nodes: &dyn Nodes, start: u64, end: u64) -> Hash {
    let size = end - start;
    if size.is_power_of_two() && start.is_multiple_of(size) {
        let level = size.trailing_zeros();
        return nodes.node(level, start >> level).unwrap_or_default();
    }
    let k = split(size);
    node_hash(&subtree(nodes, start, start + k), &subtree(nodes, start + k, end))
}

/// The audit path of leaf `index` in the tree of the first `size` leaves (RFC 6962 §2.1.1).
pub fn inclusion_proof(nodes: &dyn Nodes, index: u64, size: u64) -> Vec<Hash> {
    fn path(nodes: &dyn Nodes, index: u64, start: u64, end: u64, out: &mut Vec<Hash>) {
        let size = end - start;
        if size <= 1 {
            return;
        }
        let k = split(size);
        if index < start + k {
            path(nodes, index, start, start + k, out);
            out.push(subtree(nodes, start + k, end));
        } else {
            path(nodes, index, start + k, end, out);
            out.push(subtree(nodes, start, start + k));
        }
    }
    let mut out = Vec::new();
    if index < size {
        path(nodes, index, 0, size, &mut out);
    }
    out
}

/// Checks an audit path (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnode, mut snode, mut r) = (index, size - 1, *leaf);
    for p in proof {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && r == *root
}

/// The proof that the tree of the first `old` leaves is a prefix of the tree of `new` (RFC 6962
/// §2.1.2).
pub fn consistency_proof(nodes: &dyn Nodes, old: u64, new: u64) -> Vec<Hash> {
    fn sub(nodes: &dyn Nodes, m: u64, start: u64, end: u64, complete: bool, out: &mut Vec<Hash>) {
        let n = end - start;
        if m == n {
            if !complete {
                out.push(subtree(nodes, start, end));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            sub(nodes, m, start, start + k, complete, out);
            out.push(subtree(nodes, start + k, end));
        } else {
            sub(nodes, m - k, start + k, end, false, out);
            out.push(subtree(nodes, start, start + k));
        }
    }
    let mut out = Vec::new();
    if 0 < old && old < new {
        sub(nodes, old, 0, new, true, &mut out);
    }
    out
}

/// Checks a consistency proof (RFC 9162 §2.1.4.2).
pub fn verify_consistency(old: u64, new: u64, old_root: &Hash, new_root: &Hash, proof: &[Hash]) -> bool {
    if old == 0 || old > new {
        return false;
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else { return false };
    let (mut fnode, mut snode) = (old - 1, new - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && fr == *old_root && sr == *new_root
}

/// A whole tree in memory, level by level: level 0 the leaves, level k the hashes of the complete
/// subtrees of 2^k leaves. What a seal builds, and the verifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Levels(Vec<Vec<Hash>>);

impl Levels {
    pub fn new(leaves: Vec<Hash>) -> Self {
        let mut levels = vec![leaves];
        while levels.last().is_some_and(|l| l.len() >= 2) {
            let below = levels.last().expect("a level");
            let above = below.chunks_exact(2).map(|pair| node_hash(&pair[0], &pair[1])).collect();
            levels.push(above);
        }
        Levels(levels)
    }

    pub fn size(&self) -> u64 {
        self.0[0].len() as u64
    }

    pub fn root(&self) -> Hash {
        match self.size() {
            0 => Hash::of(&[]),
            n => subtree(self, 0, n),
        }
    }

    /// The tiles that hold this tree (see the module's documentation).
    pub fn tiles(&self) -> Vec<Tile> {
        let mut tiles = Vec::new();
        let mut level = 0;
        while let Some(row) = self.0.get(level as usize * TILE_HEIGHT as usize) {
            if row.is_empty() {
                break;
            }
            for (index, hashes) in row.chunks(TILE_WIDTH).enumerate() {
                tiles.push(Tile { level, index: index as u64, hashes: hashes.to_vec() });
            }
            level += 1;
        }
        tiles
    }
}

impl Nodes for Levels {
    fn node(&self, level: u32, index: u64) -> Option<Hash> {
        self.0.get(level as usize)?.get(usize::try_from(index).ok()?).copied()
    }
}

/// Levels of the tree one tile spans.
pub const TILE_HEIGHT: u32 = 8;
/// Hashes one tile holds.
pub const TILE_WIDTH: usize = 1 << TILE_HEIGHT;

/// A stored piece of a tree: the hashes of complete subtrees of 256^level leaves, numbered from
/// 256·index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tile {
    pub level: u32,
    pub index: u64,
    pub hashes: Vec<Hash>,
}

/// The tile that holds the level-`level` node `index`, and where in it the node's first
/// base-level hash sits.
fn tile_of(level: u32, index: u64) -> ((u32, u64), u64, u32) {
    let (tile_level, above) = (level / TILE_HEIGHT, level % TILE_HEIGHT);
    let first = index << above;
    ((tile_level, first / TILE_WIDTH as u64), first % TILE_WIDTH as u64, above)
}

/// Nodes folded from the tiles at hand.
pub struct Tiles<'a>(pub &'a [Tile]);

impl Nodes for Tiles<'_> {
    fn node(&self, level: u32, index: u64) -> Option<Hash> {
        let ((tile_level, tile_index), offset, above) = tile_of(level, index);
        let tile = self.0.iter().find(|t| t.level == tile_level && t.index == tile_index)?;
        let start = usize::try_from(offset).ok()?;
        let hashes = tile.hashes.get(start..start + (1 << above))?;
        let mut row = hashes.to_vec();
        while row.len() > 1 {
            row = row.chunks_exact(2).map(|pair| node_hash(&pair[0], &pair[1])).collect();
        }
        row.first().copied()
    }
}

/// The tiles (level, index) an inclusion proof of leaf `index` in a tree of `size` reads.
pub fn tiles_for_inclusion(index: u64, size: u64) -> BTreeSet<(u32, u64)> {
    struct Recorder(std::cell::RefCell<BTreeSet<(u32, u64)>>);
    impl Nodes for Recorder {
        fn node(&self, level: u32, index: u64) -> Option<Hash> {
            self.0.borrow_mut().insert(tile_of(level, index).0);
            Some(Hash::default())
        }
    }
    let recorder = Recorder(Default::default());
    inclusion_proof(&recorder, index, size);
    recorder.0.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(text: &str) -> Hash {
        text.parse().unwrap()
    }

    /// The test leaves of Certificate Transparency's reference implementation.
    fn ct_leaves() -> Vec<Hash> {
        ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
            .iter()
            .map(|hex| {
                let bytes: Vec<u8> =
                    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
                leaf_hash(&bytes)
            })
            .collect()
    }

    #[test]
    fn roots_match_the_published_rfc_6962_vectors() {
        let roots = [
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let leaves = ct_leaves();
        for (size, want) in roots.iter().enumerate() {
            assert_eq!(root(&leaves[..size]), h(want), "size {size}");
        }
    }

    #[test]
    fn proofs_match_the_published_rfc_6962_vectors() {
        let levels = Levels::new(ct_leaves());
        let inclusion = [
            (
                0,
                vec![
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                vec![
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
        ];
        for (index, want) in inclusion {
            let want: Vec<Hash> = want.into_iter().map(h).collect();
            assert_eq!(inclusion_proof(&levels, index, 8), want, "inclusion of {index}");
            assert!(verify_inclusion(&levels.0[0][index as usize], index, 8, &want, &levels.root()));
        }
        let consistency = [
            (
                1,
                8,
                vec![
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                vec![
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                vec![
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        let leaves = ct_leaves();
        for (old, new, want) in consistency {
            let want: Vec<Hash> = want.into_iter().map(h).collect();
            let tree = Levels::new(leaves[..new as usize].to_vec());
            assert_eq!(consistency_proof(&tree, old, new), want, "consistency {old} → {new}");
            let old_root = root(&leaves[..old as usize]);
            assert!(verify_consistency(old, new, &old_root, &tree.root(), &want));
        }
        assert!(consistency_proof(&levels, 1, 1).is_empty());
    }

    #[test]
    fn tiles_hold_every_node_a_proof_needs() {
        for size in [1u64, 2, 255, 256, 257, 1000, 65_536, 70_000] {
            let leaves: Vec<Hash> = (0..size).map(|i| leaf_hash(&i.to_be_bytes())).collect();
            let tree = Levels::new(leaves);
            let tiles = tree.tiles();
            for index in [0, size / 3, size / 2, size - 1] {
                let needed = tiles_for_inclusion(index, size);
                let held: Vec<Tile> = tiles.iter().filter(|t| needed.contains(&(t.level, t.index))).cloned().collect();
                assert_eq!(inclusion_proof(&Tiles(&held), index, size), inclusion_proof(&tree, index, size));
                assert!(needed.len() <= 2 * (64 - size.leading_zeros() as usize).div_ceil(8), "{size}: {needed:?}");
            }
        }
    }
}
