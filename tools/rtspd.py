#!/usr/bin/python3
"""rtspd.py - a real RTSP server for edm-cast's tests: GStreamer's gst-rtsp-server (Debian's
gir1.2-gst-rtsp-server-1.0 and python3-gi; /usr/bin/python3, which has them).

    tools/rtspd.py PORT CLIP.mp4

Serves the clip's H.264 at rtsp://127.0.0.1:PORT/cam (RTP payload type 96), from its start for
each client (a media per client, not shared). At the clip's end the session stays open and sends
nothing, as a camera that hung does. Prints "listening" once it listens and "client" at each
connection, flushed, for the test to follow.
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    port, clip = sys.argv[1], sys.argv[2]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    # An MP4, not raw H.264: qtdemux gives the frames their timestamps.
    factory.set_launch(
        f"( filesrc location={clip} ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 )"
    )
    factory.set_shared(False)
    server.get_mount_points().add_factory("/cam", factory)
    server.connect("client-connected", lambda *_: print("client", flush=True))
    if server.attach(None) == 0:
        sys.exit(f"rtspd: cannot listen on 127.0.0.1:{port}")
    print("listening", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
