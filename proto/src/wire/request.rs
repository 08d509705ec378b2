//! The download manager's packets (`edm-cast serve` / `edm-cast get`): a server announces itself on
//! the group, a student's PC asks it for a URL, and the server answers with the session that carries
//! it, or a refusal. The header's session field is 0 in all four. SERVER, OFFER and REFUSE are signed
//! when the server has a key, so a student's `get` can tell the lab's server from a rogue one.

use super::feedback::truncate_utf8;
use super::{FeedbackAddr, ParseError, Reader};
use bytes::BufMut;

/// Longest URL a REQUEST carries (bytes of UTF-8).
pub const MAX_URL_LEN: usize = 1024;
/// Longest refusal reason (bytes of UTF-8).
pub const MAX_REASON_LEN: usize = 512;

/// SERVER (0x20): a download manager is here; requests go to `requests`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Where requests go.
    pub requests: FeedbackAddr,
}

impl Server {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self, ParseError> {
        Ok(Server {
            requests: FeedbackAddr::parse(r)?,
        })
    }

    pub(crate) fn write(&self, out: &mut impl BufMut) {
        self.requests.write(out);
    }
}

/// REQUEST (0x21): please send me this URL. Repeated until answered, with the same `request` id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The requester's random id for this request; answers quote it.
    pub request: u32,
    /// The URL, 1 to `MAX_URL_LEN` bytes.
    pub url: String,
}

impl Request {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self, ParseError> {
        let request = r.u32()?;
        let len = r.u16()? as usize;
        let url = r.text(len, MAX_URL_LEN, "url")?;
        if url.is_empty() {
            return Err(ParseError::Invalid("url"));
        }
        Ok(Request { request, url })
    }

    pub(crate) fn write(&self, out: &mut impl BufMut) {
        let url = truncate_utf8(&self.url, MAX_URL_LEN);
        out.put_u32(self.request);
        out.put_u16(url.len() as u16);
        out.put_slice(url.as_bytes());
    }
}

/// OFFER (0x22): the URL is (or is about to be) sent as `session` on the group, at `port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    /// The request answered.
    pub request: u32,
    /// The session to join.
    pub session: u32,
    /// The group port it is sent on.
    pub port: u16,
}

impl Offer {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self, ParseError> {
        let offer = Offer {
            request: r.u32()?,
            session: r.u32()?,
            port: r.u16()?,
        };
        if offer.port == 0 {
            return Err(ParseError::Invalid("port"));
        }
        Ok(offer)
    }

    pub(crate) fn write(&self, out: &mut impl BufMut) {
        out.put_u32(self.request);
        out.put_u32(self.session);
        out.put_u16(self.port);
    }
}

/// REFUSE (0x23): the server will not send this URL, and says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refuse {
    /// The request answered.
    pub request: u32,
    /// Why, for the student.
    pub reason: String,
}

impl Refuse {
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self, ParseError> {
        let request = r.u32()?;
        let len = r.u16()? as usize;
        let reason = r.text(len, MAX_REASON_LEN, "reason")?;
        Ok(Refuse { request, reason })
    }

    pub(crate) fn write(&self, out: &mut impl BufMut) {
        let reason = truncate_utf8(&self.reason, MAX_REASON_LEN);
        out.put_u32(self.request);
        out.put_u16(reason.len() as u16);
        out.put_slice(reason.as_bytes());
    }
}
