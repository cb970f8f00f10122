"""`surgbot console`: the teleop VR console server (contract sections 1 and 6).

Argument parsing only at import (the CLI imports every subcommand to build
`--help`); rclpy and the server are imported when the command runs.
"""

from __future__ import annotations

import argparse

from surgbot import contract
from surgbot.errors import CliError
from surgbot.processes import exit_skipping_finalisation


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default loopback; anything else exposes the console, with a warning)")
    parser.add_argument("--port", type=int, default=contract.CONSOLE_DEFAULT_PORT, help="HTTPS + WSS port")
    parser.add_argument("--token", default="",
                        help="operator token (default $SURGBOT_CONSOLE_TOKEN, else generated and printed)")
    parser.add_argument("--cert", default="", help="PEM certificate (default: self-signed, created on first run)")
    parser.add_argument("--key", default="", help="PEM private key of --cert")
    parser.add_argument("--allowed-host", action="append", default=[],
                        help="extra host name the page may be reached by (repeatable)")
    parser.add_argument("--video-source", choices=("compressed", "raw", "none"), default="compressed",
                        help="camera JPEG passed through, image_raw encoded, or no video")
    parser.add_argument("--jpeg-quality", type=int, default=80, help="JPEG quality with --video-source raw")
    parser.add_argument("--video-width", type=int, default=0, help="encoded width with --video-source raw")


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise CliError(f"--port {args.port} outside 0..65535")
    if bool(args.cert) != bool(args.key):
        raise CliError("give both --cert and --key, or neither")
    if not 10 <= args.jpeg_quality <= 100:
        raise CliError(f"--jpeg-quality {args.jpeg_quality} outside 10..100")
    from surgbot.nodes.teleop_console import console_token, run_console  # rclpy: only when it runs

    token, generated = console_token(args.token)
    if generated:
        print("teleop console: no --token or SURGBOT_CONSOLE_TOKEN given, generated one for this run", flush=True)
    overrides = {"host": args.host, "port": args.port, "cert": args.cert, "key": args.key,
                 "allowed_hosts": tuple(args.allowed_host), "video_source": args.video_source,
                 "jpeg_quality": args.jpeg_quality, "video_width": args.video_width}
    try:
        status = run_console(token, overrides, args=[])
    except ValueError as exc:
        raise CliError(str(exc)) from None
    # everything is closed; native DDS/rclpy threads must not meet interpreter finalisation
    exit_skipping_finalisation(status)
