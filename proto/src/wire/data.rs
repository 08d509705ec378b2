//! DATA (0x02): one encoding symbol of one source block; in an encrypted session the symbol is
//! sealed (AES-256-GCM), so it is T + 16 bytes.

use super::{HEADER_LEN, ParseError, Reader};
use bytes::BufMut;

/// Bytes in a DATA datagram besides the symbol: header, block, ESI.
pub const DATA_OVERHEAD: usize = HEADER_LEN + 8;

/// Bytes an AEAD tag adds to a sealed symbol (AES-256-GCM).
pub const TAG_LEN: usize = 16;

/// RaptorQ encoding symbol ids are 24 bits (RFC 6330 section 3.2).
pub const MAX_ESI: u32 = (1 << 24) - 1;

/// One symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Data<'a> {
    /// Source block number, from 0.
    pub block: u32,
    /// Encoding symbol id: below the block's K a source symbol, from K on a repair symbol.
    pub esi: u32,
    /// The symbol's T bytes (sealed: T + 16).
    pub symbol: &'a [u8],
}

impl<'a> Data<'a> {
    pub(crate) fn parse(r: &mut Reader<'a>) -> Result<Self, ParseError> {
        let block = r.u32()?;
        let esi = r.u32()?;
        if esi > MAX_ESI {
            return Err(ParseError::Invalid("ESI above 24 bits"));
        }
        let symbol = r.rest();
        if symbol.is_empty() {
            return Err(ParseError::Truncated);
        }
        Ok(Data { block, esi, symbol })
    }

    pub(crate) fn write(&self, out: &mut impl BufMut) {
        out.put_u32(self.block);
        out.put_u32(self.esi);
        out.put_slice(self.symbol);
    }
}
