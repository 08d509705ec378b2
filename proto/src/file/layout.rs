//! How a file is cut into source blocks of K symbols of T bytes. In an exact layout the last block
//! has only the symbols it needs; in a padded layout (a source whose size was not known when the
//! session began) every block has K symbols, the last one zero-padded, so that no block's K changes
//! when the size becomes known.

use crate::wire::{MAX_BLOCK_SYMBOLS, MAX_SYMBOL_SIZE, MIN_SYMBOL_SIZE};

/// Why a file cannot be cut into blocks as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// T out of range.
    #[error("symbol size {0} is outside {MIN_SYMBOL_SIZE}..={MAX_SYMBOL_SIZE}")]
    SymbolSize(u16),
    /// K out of range.
    #[error("block size {0} symbols is outside 1..={MAX_BLOCK_SYMBOLS}")]
    BlockSymbols(u16),
    /// More blocks than `MAX_BLOCKS`.
    #[error("file of {0} bytes needs more than {MAX_BLOCKS} blocks of this size")]
    TooLarge(u64),
}

/// Most blocks in one file: bounds the per-block state both sides keep (a few dozen bytes each),
/// whatever an ANNOUNCE claims. With the default K and T that is a 5.9 TB file.
pub const MAX_BLOCKS: u32 = 1 << 22;

/// How a file is cut: T, K, the number of blocks, and whether the last is padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// `None` until the size of a growing source is known.
    file_size: Option<u64>,
    symbol_size: u16,
    block_symbols: u16,
    /// `MAX_BLOCKS` while the size is unknown.
    num_blocks: u32,
    padded: bool,
}

impl Layout {
    /// The exact layout of a file of known size.
    pub fn new(file_size: u64, symbol_size: u16, block_symbols: u16) -> Result<Self, LayoutError> {
        Layout::open(symbol_size, block_symbols)?.exact(file_size)
    }

    /// A padded layout whose size is not known yet (`finish` sets it).
    pub fn open(symbol_size: u16, block_symbols: u16) -> Result<Self, LayoutError> {
        if !(MIN_SYMBOL_SIZE..=MAX_SYMBOL_SIZE).contains(&symbol_size) {
            return Err(LayoutError::SymbolSize(symbol_size));
        }
        if block_symbols == 0 || block_symbols > MAX_BLOCK_SYMBOLS {
            return Err(LayoutError::BlockSymbols(block_symbols));
        }
        Ok(Layout {
            file_size: None,
            symbol_size,
            block_symbols,
            num_blocks: MAX_BLOCKS,
            padded: true,
        })
    }

    fn exact(self, file_size: u64) -> Result<Self, LayoutError> {
        Ok(Layout {
            padded: false,
            ..self.finish(file_size)?
        })
    }

    /// The layout once the size is known; a padded layout stays padded.
    pub fn finish(self, file_size: u64) -> Result<Self, LayoutError> {
        let num_blocks = u32::try_from(file_size.div_ceil(self.block_bytes()))
            .ok()
            .filter(|&n| n <= MAX_BLOCKS)
            .ok_or(LayoutError::TooLarge(file_size))?;
        Ok(Layout {
            file_size: Some(file_size),
            num_blocks,
            ..self
        })
    }

    /// The file's size, once known.
    pub fn file_size(&self) -> Option<u64> {
        self.file_size
    }

    /// Every block has K symbols (the session began without a known size).
    pub fn padded(&self) -> bool {
        self.padded
    }

    /// T.
    pub fn symbol_size(&self) -> u16 {
        self.symbol_size
    }

    /// K of a full block.
    pub fn block_symbols(&self) -> u16 {
        self.block_symbols
    }

    /// Blocks in the file; while the size is unknown, the most a file may have.
    pub fn num_blocks(&self) -> u32 {
        self.num_blocks
    }

    /// Bytes of a full block.
    pub fn block_bytes(&self) -> u64 {
        self.symbol_size as u64 * self.block_symbols as u64
    }

    /// Where `block` starts in the file.
    pub fn offset(&self, block: u32) -> u64 {
        block as u64 * self.block_bytes()
    }

    /// Bytes of the file in `block` (0 past the end; a whole block while the size is unknown).
    pub fn len(&self, block: u32) -> usize {
        let Some(size) = self.file_size else {
            return self.block_bytes() as usize;
        };
        let start = self.offset(block).min(size);
        (size - start).min(self.block_bytes()) as usize
    }

    /// K of `block`: its number of source symbols.
    pub fn symbols(&self, block: u32) -> u16 {
        if self.padded {
            return if block < self.num_blocks {
                self.block_symbols
            } else {
                0
            };
        }
        self.len(block).div_ceil(self.symbol_size as usize) as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_cover_the_file_exactly() {
        for size in [
            0u64,
            1,
            1407,
            1408,
            1409,
            1408 * 1024,
            1408 * 1024 + 1,
            10_000_000,
        ] {
            let l = Layout::new(size, 1408, 1024).unwrap();
            let total: u64 = (0..l.num_blocks()).map(|b| l.len(b) as u64).sum();
            assert_eq!(total, size);
            for b in 0..l.num_blocks() {
                assert!(l.len(b) > 0);
                assert_eq!(l.symbols(b) as usize, l.len(b).div_ceil(1408));
            }
        }
        let l = Layout::new(1408 * 1024 + 1, 1408, 1024).unwrap();
        assert_eq!((l.num_blocks(), l.symbols(1), l.len(1)), (2, 1, 1));
    }

    #[test]
    fn padded_blocks_keep_k_when_the_size_arrives() {
        let open = Layout::open(1408, 1024).unwrap();
        assert_eq!(
            (open.file_size(), open.len(7), open.symbols(7)),
            (None, 1408 * 1024, 1024)
        );
        let l = open.finish(1408 * 1024 + 1).unwrap();
        assert!(l.padded());
        assert_eq!((l.num_blocks(), l.symbols(1), l.len(1)), (2, 1024, 1));
        assert_eq!(l.symbols(2), 0);
        assert!(open.finish(u64::MAX).is_err());
    }

    #[test]
    fn refuses_what_cannot_be_sent() {
        assert_eq!(Layout::new(1, 8, 1024), Err(LayoutError::SymbolSize(8)));
        assert_eq!(Layout::new(1, 1408, 0), Err(LayoutError::BlockSymbols(0)));
        assert!(matches!(
            Layout::new(u64::MAX, 16, 1),
            Err(LayoutError::TooLarge(_))
        ));
        // A hostile announce cannot make a receiver allocate billions of block entries.
        assert!(Layout::new(16 * MAX_BLOCKS as u64, 16, 1).is_ok());
        assert!(Layout::new(16 * MAX_BLOCKS as u64 + 1, 16, 1).is_err());
    }
}
