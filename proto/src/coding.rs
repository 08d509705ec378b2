//! What the file codec and the video FEC share of RaptorQ (RFC 6330): both code one source block
//! at a time, with raptorq's own 8-bit source block number always 0 (the block or window is named
//! by our own headers), one sub-block and symbol alignment 1.

use raptorq::ObjectTransmissionInformation;

/// raptorq's transfer parameters for one source block of `k` symbols of `t` bytes.
pub(crate) fn block_oti(k: u16, t: u16) -> ObjectTransmissionInformation {
    ObjectTransmissionInformation::new(k as u64 * t as u64, t, 1, 1, 1)
}
