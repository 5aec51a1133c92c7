//! Tiled logs (<https://c2sp.org/tlog-tiles>): the Merkle tree and the entries as static
//! files.
//!
//! - `tile/<L>/<N>[.p/<W>]`: the `N`-th tile at level `L`, 256 consecutive hashes at tree
//!   height `8·L` (level 0: leaf hashes; level `L+1`: the roots of full level-`L` tiles),
//!   32 bytes each, concatenated. A partial tile (the right edge) has `1 <= W <= 255`
//!   hashes and the `.p/<W>` suffix; the partial tile at level `L` of a tree of size `s`
//!   has `floor(s / 256^L) mod 256` hashes.
//! - `tile/entries/<N>[.p/<W>]`: the entries of level-0 tile `N`, each prefixed with its
//!   length as a big-endian `u16`.
//! - `<N>` is written in 3-digit groups, all but the last prefixed with `x`:
//!   1234067 is `x001/x234/067`.
//!
//! [`TileSet`] answers [`HashReader`] queries from tiles, so a client holding only tiles
//! can compute any proof; [`TileBuilder`] produces the tiles as entries are appended.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::LogError;
use crate::hash::{HASH_SIZE, Hash, complete_subtree_root, empty_root, root_from_subtrees};
use crate::proof::{HashReader, NodeId};

/// Tree height covered by one tile.
pub const TILE_HEIGHT: u8 = 8;
/// Hashes (or entries) in a full tile.
pub const TILE_WIDTH: u16 = 256;
/// Largest entry an entry bundle can hold (its `u16` length prefix).
pub const MAX_ENTRY_SIZE: usize = u16::MAX as usize;
/// Highest tile level a path may name.
pub const MAX_TILE_LEVEL: u8 = 63;

/// What a tile holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TileKind {
    /// Merkle tree hashes at tree height `8 * level`.
    Hashes {
        /// Tile level (`<L>` in the path).
        level: u8,
    },
    /// An entry bundle (`tile/entries/…`).
    Entries,
}

/// Coordinates of a tile or entry bundle: kind, index `N`, width `W` (256 = full).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tile {
    kind: TileKind,
    index: u64,
    width: u16,
}

impl fmt::Debug for Tile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

impl fmt::Display for Tile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// `x001/x234/067` for 1234067.
pub fn encode_index(n: u64) -> String {
    let mut groups = Vec::new();
    let mut n = n;
    loop {
        groups.push(n % 1000);
        n /= 1000;
        if n == 0 {
            break;
        }
    }
    let mut s = String::new();
    for (i, g) in groups.iter().rev().enumerate() {
        if i + 1 < groups.len() {
            s.push_str(&alloc::format!("x{g:03}/"));
        } else {
            s.push_str(&alloc::format!("{g:03}"));
        }
    }
    s
}

fn parse_small_decimal(s: &str) -> Option<u64> {
    crate::checkpoint::parse_decimal(s)
}

impl Tile {
    /// A hash tile. `width` is `1..=256`, `level <= 63`.
    pub fn hashes(level: u8, index: u64, width: u16) -> Result<Tile, LogError> {
        if level > MAX_TILE_LEVEL {
            return Err(LogError::MalformedTilePath("level above 63"));
        }
        Tile::make(TileKind::Hashes { level }, index, width)
    }

    /// An entry bundle. `width` is `1..=256`.
    pub fn entries(index: u64, width: u16) -> Result<Tile, LogError> {
        Tile::make(TileKind::Entries, index, width)
    }

    fn make(kind: TileKind, index: u64, width: u16) -> Result<Tile, LogError> {
        if width == 0 || width > TILE_WIDTH {
            return Err(LogError::MalformedTilePath("width must be 1..=256"));
        }
        Ok(Tile { kind, index, width })
    }

    /// Kind.
    pub fn kind(&self) -> TileKind {
        self.kind
    }

    /// Hash tile level, or `None` for an entry bundle.
    pub fn level(&self) -> Option<u8> {
        match self.kind {
            TileKind::Hashes { level } => Some(level),
            TileKind::Entries => None,
        }
    }

    /// Index `N` within the level.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Width `W` (number of hashes or entries), 256 for a full tile.
    pub fn width(&self) -> u16 {
        self.width
    }

    /// Whether the tile is full (256 wide).
    pub fn is_full(&self) -> bool {
        self.width == TILE_WIDTH
    }

    /// The full tile at the same coordinates.
    pub fn full(&self) -> Tile {
        Tile {
            width: TILE_WIDTH,
            ..*self
        }
    }

    /// The path relative to the log prefix, e.g. `tile/0/x001/x234/067.p/8`.
    pub fn path(&self) -> String {
        let mut s = String::from("tile/");
        match self.kind {
            TileKind::Hashes { level } => s.push_str(&alloc::format!("{level}")),
            TileKind::Entries => s.push_str("entries"),
        }
        s.push('/');
        s.push_str(&encode_index(self.index));
        if !self.is_full() {
            s.push_str(&alloc::format!(".p/{}", self.width));
        }
        s
    }

    /// Parses a tile path (relative to the log prefix). Only the canonical form is accepted
    /// (no leading zero groups, no leading zeroes in `L` or `W`, `W` in `1..=255`).
    pub fn parse_path(path: &str) -> Result<Tile, LogError> {
        if path.len() > 128 {
            return Err(LogError::MalformedTilePath("path too long"));
        }
        let rest = path
            .strip_prefix("tile/")
            .ok_or(LogError::MalformedTilePath("must start with tile/"))?;
        let (kind_s, rest) = rest
            .split_once('/')
            .ok_or(LogError::MalformedTilePath("missing index"))?;
        let kind = if kind_s == "entries" {
            TileKind::Entries
        } else {
            let level = parse_small_decimal(kind_s)
                .filter(|l| *l <= u64::from(MAX_TILE_LEVEL))
                .ok_or(LogError::MalformedTilePath(
                    "level must be 0..=63 in decimal",
                ))?;
            TileKind::Hashes { level: level as u8 }
        };
        let (index_s, width) = match rest.split_once(".p/") {
            Some((idx, w)) => {
                let w = parse_small_decimal(w)
                    .filter(|w| (1..u64::from(TILE_WIDTH)).contains(w))
                    .ok_or(LogError::MalformedTilePath("partial width must be 1..=255"))?;
                (idx, w as u16)
            }
            None => (rest, TILE_WIDTH),
        };
        let groups: Vec<&str> = index_s.split('/').collect();
        let mut n: u64 = 0;
        for (i, g) in groups.iter().enumerate() {
            let digits = if i + 1 < groups.len() {
                g.strip_prefix('x')
                    .ok_or(LogError::MalformedTilePath("index group without x prefix"))?
            } else {
                g
            };
            if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(LogError::MalformedTilePath("index group is not 3 digits"));
            }
            let v: u64 = digits
                .parse()
                .map_err(|_| LogError::MalformedTilePath("index group is not 3 digits"))?;
            n = n
                .checked_mul(1000)
                .and_then(|n| n.checked_add(v))
                .ok_or(LogError::MalformedTilePath("index overflows"))?;
        }
        let tile = Tile::make(kind, n, width)?;
        if encode_index(n) != index_s {
            return Err(LogError::MalformedTilePath("index is not canonical"));
        }
        Ok(tile)
    }
}

/// `floor(size / 256^level)`: the number of hashes at tile level `level` of a tree.
pub fn hashes_at_level(size: u64, level: u8) -> u64 {
    size.checked_shr(u32::from(level) * u32::from(TILE_HEIGHT))
        .unwrap_or(0)
}

/// Every hash tile of a tree of `size` entries, as a client would fetch them: full tiles
/// and, per level, the partial tile if any. Level by level, index order.
pub fn tiles_for_size(size: u64) -> Vec<Tile> {
    let mut out = Vec::new();
    let mut level: u8 = 0;
    loop {
        let n = hashes_at_level(size, level);
        if n == 0 {
            break;
        }
        out.extend(level_tiles(TileKind::Hashes { level }, n, 0));
        level += 1;
    }
    out
}

/// Every entry bundle of a tree of `size` entries.
pub fn entry_bundles_for_size(size: u64) -> Vec<Tile> {
    level_tiles(TileKind::Entries, size, 0)
}

/// Tiles of one level holding `n` items, starting at tile `first`.
fn level_tiles(kind: TileKind, n: u64, first: u64) -> Vec<Tile> {
    let full = n / u64::from(TILE_WIDTH);
    let rem = (n % u64::from(TILE_WIDTH)) as u16;
    let mut out: Vec<Tile> = (first..full)
        .map(|index| Tile {
            kind,
            index,
            width: TILE_WIDTH,
        })
        .collect();
    if rem > 0 {
        out.push(Tile {
            kind,
            index: full,
            width: rem,
        });
    }
    out
}

/// The tiles (hash tiles, then entry bundles) that must be written when the tree grows
/// from `old_size` to `new_size`: new full tiles and the new partial tile of every level
/// whose content changed.
pub fn changed_tiles(old_size: u64, new_size: u64) -> Vec<Tile> {
    let mut out = Vec::new();
    if new_size <= old_size {
        return out;
    }
    let mut level: u8 = 0;
    loop {
        let n_new = hashes_at_level(new_size, level);
        if n_new == 0 {
            break;
        }
        let n_old = hashes_at_level(old_size, level);
        if n_new != n_old {
            out.extend(level_tiles(
                TileKind::Hashes { level },
                n_new,
                n_old / u64::from(TILE_WIDTH),
            ));
        }
        level += 1;
    }
    out.extend(level_tiles(
        TileKind::Entries,
        new_size,
        old_size / u64::from(TILE_WIDTH),
    ));
    out
}

/// The tile of a tree of `tree_size` entries that holds `node`, with the position of the
/// node's hashes in it: `(tile, offset, count)`; the node's hash is the root of the
/// `count` hashes starting at `offset`. `None` if the node is not a complete subtree of
/// that tree.
pub fn tile_for_node(node: NodeId, tree_size: u64) -> Option<(Tile, u16, u16)> {
    let level = node.level / TILE_HEIGHT;
    let r = node.level % TILE_HEIGHT;
    let first = node.index.checked_mul(1u64 << r)?;
    let count = 1u64 << r;
    let available = hashes_at_level(tree_size, level);
    if first.checked_add(count)? > available {
        return None;
    }
    let index = first / u64::from(TILE_WIDTH);
    let offset = (first % u64::from(TILE_WIDTH)) as u16;
    let in_tile = available - index * u64::from(TILE_WIDTH);
    let width = in_tile.min(u64::from(TILE_WIDTH)) as u16;
    let tile = Tile::hashes(level, index, width).ok()?;
    Some((tile, offset, count as u16))
}

/// The tiles to fetch, at tree size `tree_size`, to read these nodes (deduplicated).
pub fn tiles_for_nodes(nodes: &[NodeId], tree_size: u64) -> Result<Vec<Tile>, LogError> {
    let mut out: Vec<Tile> = Vec::new();
    for n in nodes {
        let (t, _, _) = tile_for_node(*n, tree_size)
            .ok_or(LogError::InvalidTreeSize("node is not in the tree"))?;
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out.sort();
    Ok(out)
}

/// Parses a hash tile: exactly `width * 32` bytes.
pub fn parse_hash_tile(tile: &Tile, data: &[u8]) -> Result<Vec<Hash>, LogError> {
    if tile.level().is_none() {
        return Err(LogError::MalformedTile("not a hash tile"));
    }
    if data.len() != usize::from(tile.width()) * HASH_SIZE {
        return Err(LogError::MalformedTile(
            "length is not 32 bytes times the width",
        ));
    }
    Ok(data
        .chunks_exact(HASH_SIZE)
        .filter_map(Hash::from_slice)
        .collect())
}

/// Encodes hashes as a tile body.
pub fn encode_hash_tile(hashes: &[Hash]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hashes.len() * HASH_SIZE);
    for h in hashes {
        out.extend_from_slice(&h.0);
    }
    out
}

/// Parses an entry bundle of `tile.width()` entries, each a big-endian `u16` length and the
/// bytes; no trailing bytes.
pub fn parse_entry_bundle<'a>(tile: &Tile, data: &'a [u8]) -> Result<Vec<&'a [u8]>, LogError> {
    if tile.kind() != TileKind::Entries {
        return Err(LogError::MalformedEntryBundle("not an entry bundle"));
    }
    let mut out = Vec::with_capacity(usize::from(tile.width()));
    let mut rest = data;
    while !rest.is_empty() {
        if out.len() == usize::from(tile.width()) {
            return Err(LogError::MalformedEntryBundle(
                "more entries than the width",
            ));
        }
        if rest.len() < 2 {
            return Err(LogError::MalformedEntryBundle("truncated length prefix"));
        }
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
        if rest.len() < len {
            return Err(LogError::MalformedEntryBundle("truncated entry"));
        }
        out.push(&rest[..len]);
        rest = &rest[len..];
    }
    if out.len() != usize::from(tile.width()) {
        return Err(LogError::MalformedEntryBundle(
            "fewer entries than the width",
        ));
    }
    Ok(out)
}

/// Encodes entries as an entry bundle.
pub fn encode_entry_bundle<E: AsRef<[u8]>>(entries: &[E]) -> Result<Vec<u8>, LogError> {
    let mut out = Vec::new();
    for e in entries {
        let e = e.as_ref();
        let len = u16::try_from(e.len()).map_err(|_| LogError::EntryTooLarge(e.len()))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(out)
}

/// Hash tiles in memory, answering [`HashReader`] queries: what a client fetched.
///
/// Tiles are keyed by level and index; a wider tile replaces a narrower one at the same
/// coordinates if the narrower is a prefix of it. Contents are *not* authenticated: verify
/// whatever is computed from them against a trusted checkpoint.
#[derive(Clone, Debug, Default)]
pub struct TileSet {
    tiles: BTreeMap<(u8, u64), Vec<Hash>>,
}

impl TileSet {
    /// No tiles.
    pub fn new() -> TileSet {
        TileSet::default()
    }

    /// Adds a hash tile from its bytes.
    pub fn insert(&mut self, tile: &Tile, data: &[u8]) -> Result<(), LogError> {
        let hashes = parse_hash_tile(tile, data)?;
        self.insert_hashes(tile, hashes)
    }

    /// Adds a hash tile from its hashes (`hashes.len()` must equal the width).
    pub fn insert_hashes(&mut self, tile: &Tile, hashes: Vec<Hash>) -> Result<(), LogError> {
        let level = tile
            .level()
            .ok_or(LogError::MalformedTile("not a hash tile"))?;
        if hashes.len() != usize::from(tile.width()) {
            return Err(LogError::MalformedTile("hash count is not the width"));
        }
        let key = (level, tile.index());
        match self.tiles.get(&key) {
            Some(old) if old.len() >= hashes.len() => {
                if old[..hashes.len()] != hashes[..] {
                    return Err(LogError::MalformedTile(
                        "conflicts with a tile already held",
                    ));
                }
            }
            Some(old) => {
                if hashes[..old.len()] != old[..] {
                    return Err(LogError::MalformedTile(
                        "conflicts with a tile already held",
                    ));
                }
                self.tiles.insert(key, hashes);
            }
            None => {
                self.tiles.insert(key, hashes);
            }
        }
        Ok(())
    }

    /// The hashes held for tile `level`/`index`, if any.
    pub fn get(&self, level: u8, index: u64) -> Option<&[Hash]> {
        self.tiles.get(&(level, index)).map(|v| v.as_slice())
    }

    /// Number of tiles held.
    pub fn len(&self) -> usize {
        self.tiles.len()
    }

    /// Whether no tile is held.
    pub fn is_empty(&self) -> bool {
        self.tiles.is_empty()
    }
}

impl HashReader for TileSet {
    fn read_node(&self, node: NodeId) -> Result<Hash, LogError> {
        let level = node.level / TILE_HEIGHT;
        let r = node.level % TILE_HEIGHT;
        let count = 1u64 << r;
        let first = node
            .index
            .checked_mul(count)
            .ok_or(LogError::InvalidTreeSize("node index overflows"))?;
        let index = first / u64::from(TILE_WIDTH);
        let offset = (first % u64::from(TILE_WIDTH)) as usize;
        let missing = || {
            let t = Tile {
                kind: TileKind::Hashes { level },
                index,
                width: TILE_WIDTH,
            };
            LogError::TileMissing(t.path())
        };
        let hashes = self.tiles.get(&(level, index)).ok_or_else(missing)?;
        let slice = hashes
            .get(offset..offset + count as usize)
            .ok_or_else(missing)?;
        complete_subtree_root(slice).ok_or(LogError::MalformedTile("bad node span"))
    }
}

/// The right edge of a tiled tree: per level, the hashes of the partial tile. Appending
/// leaf hashes yields the full tiles as they complete; the root is always available.
/// Memory is at most 255 hashes per level.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TileBuilder {
    size: u64,
    edge: Vec<Vec<Hash>>,
}

impl TileBuilder {
    /// An empty tree.
    pub fn new() -> TileBuilder {
        TileBuilder::default()
    }

    /// Resumes a tree of `size` entries from its partial tiles' hashes, level 0 first
    /// (`edge[L]` has exactly `floor(size / 256^L) mod 256` hashes; trailing empty levels
    /// may be omitted).
    pub fn from_edge(size: u64, mut edge: Vec<Vec<Hash>>) -> Result<TileBuilder, LogError> {
        let mut levels = 0usize;
        while hashes_at_level(size, levels as u8) > 0 {
            levels += 1;
        }
        if edge.len() > levels && edge[levels..].iter().any(|e| !e.is_empty()) {
            return Err(LogError::MalformedTile("edge has levels beyond the tree"));
        }
        edge.resize(levels, Vec::new());
        for (l, hashes) in edge.iter().enumerate() {
            let want = hashes_at_level(size, l as u8) % u64::from(TILE_WIDTH);
            if hashes.len() as u64 != want {
                return Err(LogError::MalformedTile(
                    "partial tile width does not match the size",
                ));
            }
        }
        Ok(TileBuilder { size, edge })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash; returns the full tiles completed by it (level 0 first), with
    /// their hashes.
    pub fn push(&mut self, leaf: Hash) -> Result<Vec<(Tile, Vec<Hash>)>, LogError> {
        let size = self.size.checked_add(1).ok_or(LogError::LogFull)?;
        self.size = size;
        let mut done = Vec::new();
        let mut level = 0usize;
        let mut hash = leaf;
        loop {
            if self.edge.len() <= level {
                self.edge.push(Vec::new());
            }
            self.edge[level].push(hash);
            if self.edge[level].len() < usize::from(TILE_WIDTH) {
                break;
            }
            let hashes = core::mem::take(&mut self.edge[level]);
            hash = complete_subtree_root(&hashes).ok_or(LogError::MalformedTile("bad width"))?;
            let index = hashes_at_level(size, level as u8 + 1) - 1;
            done.push((Tile::hashes(level as u8, index, TILE_WIDTH)?, hashes));
            level += 1;
        }
        Ok(done)
    }

    /// The partial tiles of the current tree (non-empty levels), level 0 first.
    pub fn partial_tiles(&self) -> Vec<(Tile, &[Hash])> {
        let mut out = Vec::new();
        for (l, hashes) in self.edge.iter().enumerate() {
            if hashes.is_empty() {
                continue;
            }
            let index = hashes_at_level(self.size, l as u8) / u64::from(TILE_WIDTH);
            if let Ok(t) = Tile::hashes(l as u8, index, hashes.len() as u16) {
                out.push((t, hashes.as_slice()));
            }
        }
        out
    }

    /// Root of the current tree.
    pub fn root(&self) -> Hash {
        let mut subtrees: Vec<(u8, Hash)> = Vec::new();
        for (l, hashes) in self.edge.iter().enumerate().rev() {
            for h in hashes {
                subtrees.push((l as u8 * TILE_HEIGHT, *h));
            }
        }
        root_from_subtrees(&subtrees).unwrap_or_else(empty_root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_path_examples() {
        assert_eq!(encode_index(1234067), "x001/x234/067");
        let t = Tile::hashes(0, 1234067, 256).unwrap();
        assert_eq!(t.path(), "tile/0/x001/x234/067");
        let p = Tile::hashes(0, 1234067, 8).unwrap();
        assert_eq!(p.path(), "tile/0/x001/x234/067.p/8");
        assert_eq!(Tile::parse_path("tile/0/x001/x234/067.p/8").unwrap(), p);
        assert_eq!(Tile::entries(5, 1).unwrap().path(), "tile/entries/005.p/1");
    }

    #[test]
    fn spec_size_examples() {
        // "a tree of size 70,000 will be represented by 273 full level 0 tiles, one partial
        // level 0 tile of width 112, one full level 1 tile, one partial level 1 tile of
        // width 17, and one partial level 2 tile of width 1."
        let tiles = tiles_for_size(70_000);
        let count = |level: u8, full: bool| {
            tiles
                .iter()
                .filter(|t| t.level() == Some(level) && t.is_full() == full)
                .count()
        };
        assert_eq!(count(0, true), 273);
        assert_eq!(count(1, true), 1);
        assert_eq!(count(2, true), 0);
        let partial: Vec<(u8, u16)> = tiles
            .iter()
            .filter(|t| !t.is_full())
            .map(|t| (t.level().unwrap(), t.width()))
            .collect();
        assert_eq!(partial, [(0, 112), (1, 17), (2, 1)]);
        // "a tree of size 256 will be represented by a full level 0 tile and a partial
        // level 1 tile of width 1."
        let t256: Vec<String> = tiles_for_size(256).iter().map(|t| t.path()).collect();
        assert_eq!(t256, ["tile/0/000", "tile/1/000.p/1"]);
    }
}
