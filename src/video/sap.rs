//! `video --sap`: announces each channel's SDP with SAP (RFC 2974) on 224.2.127.254:9875, where
//! SAP listeners (VLC's SAP discovery) listen, and deletes the announcements when the relay stops.
//! The packets are `edm_cast_proto::video::sap`'s, the SDP `edm_cast_proto::video::sdp`'s.
//!
//! Every `SAP_EVERY`, not RFC 2974's bandwidth-shared interval (at least 300 s, for the global
//! MBone scope): on a LAN with TTL 1 a few channels' announcements every 5 s are a few hundred
//! bytes a second, and a player lists the channel within 5 s of opening its SAP list.

use super::channel::Channel;
use super::relay::{AUDIO_PORT, MEDIA_PORT};
use crate::error::Error;
use crate::net::{self, Group, Iface};
use edm_cast_proto::video::sap::{Kind, SAP_GROUP, packet};
use edm_cast_proto::video::sdp;
use std::net::Ipv4Addr;
use std::time::Duration;
use tokio::net::UdpSocket;

/// How often each channel is announced.
pub(super) const SAP_EVERY: Duration = Duration::from_secs(5);

pub(super) struct Sap {
    socket: UdpSocket,
    /// The relay's address on the interface: SAP's originating source and the SDP's `o=`.
    origin: Ipv4Addr,
    ttl: u8,
    /// What was last announced of each channel, for its deletion.
    last: Vec<Option<String>>,
}

impl Sap {
    /// A socket sending to the SAP group out of `iface` with `ttl`.
    pub(super) fn open(iface: Ipv4Addr, ttl: u32, channels: usize) -> Result<Self, Error> {
        let group = Group(SAP_GROUP.into());
        let fail = |source| Error::Socket {
            what: format!("cannot find this host's address towards {group}"),
            source,
        };
        // The source address the kernel picks towards the group: the relay's, even without --iface.
        let probe = std::net::UdpSocket::bind((iface, 0)).map_err(fail)?;
        probe.connect(SAP_GROUP).map_err(fail)?;
        let origin = match probe.local_addr().map_err(fail)?.ip() {
            std::net::IpAddr::V4(a) => a,
            std::net::IpAddr::V6(_) => iface,
        };
        let socket = net::register(net::sender_socket(
            group,
            Iface {
                ip: iface.into(),
                index: 0,
            },
            ttl,
            0,
        )?)?;
        Ok(Sap {
            socket,
            origin,
            ttl: ttl.min(255) as u8,
            last: vec![None; channels],
        })
    }

    /// The address announced from.
    pub(super) fn origin(&self) -> Ipv4Addr {
        self.origin
    }

    /// The SDP of channel `i` as a player on the LAN opens it: the channel's group, its RTP port,
    /// its parameter sets once the source sent them, and its audio track if it has one.
    fn sdp(&self, i: usize, c: &Channel) -> String {
        let (sps, pps) = c.packetizer.parameter_sets();
        sdp::Session {
            name: &c.name,
            description: c.description.as_deref(),
            origin: self.origin.into(),
            session_id: i as u64 + 1,
            address: c.group(),
            ttl: self.ttl,
            port: MEDIA_PORT,
            sps,
            pps,
            audio: c.audio.as_ref().map(|a| (AUDIO_PORT, &a.info)),
        }
        .render()
    }

    /// Announces every channel once.
    pub(super) async fn announce(&mut self, channels: &[Channel]) {
        for (i, c) in channels.iter().enumerate() {
            let text = self.sdp(i, c);
            // Best effort: the next round repeats it.
            let _ = self
                .socket
                .send_to(&packet(Kind::Announce, self.origin, &text), SAP_GROUP)
                .await;
            self.last[i] = Some(text);
        }
    }

    /// Deletes what was announced (RFC 2974 section 4: so players drop it now, not after their
    /// timeout of ten announcement intervals).
    pub(super) async fn delete(&mut self) {
        for text in self.last.iter().flatten() {
            let _ = self
                .socket
                .send_to(&packet(Kind::Delete, self.origin, text), SAP_GROUP)
                .await;
        }
    }
}
