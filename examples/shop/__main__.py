"""``python -m examples.shop``: run the load simulation and print its report."""

from __future__ import annotations

import sys

# A Ctrl-C outside the load (which `run` owns: an interrupted run and its report)
# ends the CLI on one line with the exit status of an interrupted run, 130.
INTERRUPTED = 130

try:  # the imports take a noticeable time: a Ctrl-C there is one too
    import argparse
    import importlib
    import math
    import os
    import sqlite3
    import time
    import urllib.parse
    from collections.abc import Callable
    from pathlib import Path

    from scalekit import BackendError, BackendUnavailableError, ConfigurationError

    from .report import exit_status, plot, report
    from .runner import run
    from .simulation import Settings, temporary_directory
except KeyboardInterrupt:
    if __name__ != "__main__":
        raise
    print("python -m examples.shop: interrupted before the load", file=sys.stderr)
    raise SystemExit(INTERRUPTED) from None

# SQLite integers are 64-bit: counts above this could not be stored.
_MAX_COUNT = 2**62
# Each process keeps one SQLite connection per thread per shard: more shards
# than this would spend the start-up creating files and the run on descriptors.
MAX_SHARDS = 64


def _count(text: str) -> int:
    """An argparse type: a whole number 1 .. 2**62."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if not 1 <= value <= _MAX_COUNT:
        raise argparse.ArgumentTypeError(f"expected a whole number 1..2**62, got {text}")
    return value


def _shards(text: str) -> int:
    """An argparse type: a whole number of shards 1 .. `MAX_SHARDS`."""
    value = _count(text)
    if value > MAX_SHARDS:
        raise argparse.ArgumentTypeError(f"expected a whole number 1..{MAX_SHARDS}, got {text}")
    return value


def _directory(text: str) -> Path:
    """An argparse type: a non-empty path (an empty one would mean the current directory)."""
    if not text:
        raise argparse.ArgumentTypeError("expected a directory path, got ''")
    return Path(text)


def _seconds(text: str) -> float:
    """An argparse type: a finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds, got {text!r}")
    return value


def _redis_url(cluster: bool) -> Callable[[str], str]:
    def check(text: str) -> str:
        parts = urllib.parse.urlsplit(text)
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise argparse.ArgumentTypeError(
                f"expected a URL redis://HOST:PORT/DB (or rediss://), got {text!r}"
            )
        try:
            port = parts.port
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a port 1..65535 in {text!r}") from None
        path = parts.path.strip("/")
        if path and not path.isdigit():
            raise argparse.ArgumentTypeError(
                f"expected a database number after the port, got {text!r}"
            )
        if cluster and path not in ("", "0"):
            raise argparse.ArgumentTypeError(f"a Redis Cluster has only database 0, got {text!r}")
        del port
        problem = _redis_options(text)
        if problem:
            raise argparse.ArgumentTypeError(
                f"expected a URL redis-py accepts, got {text!r}: {problem}"
            )
        return text

    return check


def _importable(module: str) -> bool:
    """Whether *module* (an optional driver) can be imported, checked before the run."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _redis_options(url: str) -> str:
    """Why redis-py refuses *url*'s query options ('' if it takes them, or is not installed).

    Builds a client without connecting: redis-py checks the values then.
    """
    try:
        import redis
    except ImportError:  # the backend reports it when the run starts
        return ""
    try:
        redis.Redis.from_url(url).close()
    except (ValueError, TypeError) as exc:
        return str(exc)
    return ""


def _zookeeper_hosts(text: str) -> str:
    hosts, _, chroot = text.partition("/")
    for host in hosts.split(","):
        name, sep, port = host.rpartition(":")
        if not (name and sep and port.isdigit() and 0 < int(port) < 65536) or "," in name:
            raise argparse.ArgumentTypeError(
                f"expected HOST:PORT[,HOST:PORT...][/chroot], got {text!r}"
            )
    del chroot
    return text


def _log_events() -> None:
    """Show the `scalekit` logger's events on stderr (they have a NullHandler otherwise)."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("scalekit")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return its exit status.

    Ctrl-C during the load stops it early, with a sweep and a report
    (`run`); before the load, or after it while the report is made and
    printed, it ends the CLI with one line on stderr. Each returns 130.
    """
    stage = ["before the load"]
    try:
        return _main(argv, stage)
    except KeyboardInterrupt:
        print(f"python -m examples.shop: interrupted {stage[0]}", file=sys.stderr)
        return INTERRUPTED


def _main(argv: list[str] | None, stage: list[str]) -> int:
    """`main`; *stage* names the part of the run under way, for a Ctrl-C outside the load."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.shop",
        description="Run the scalekit shop's order flow under load and report what happened. "
        "Without --redis or --zookeeper it runs on in-memory locks and caches.",
    )
    parser.add_argument(
        "--buyers",
        type=_count,
        default=Settings.buyers,
        help="concurrent buyers, spread over the workers (default %(default)s)",
    )
    parser.add_argument(
        "--duration",
        type=_seconds,
        default=Settings.duration,
        help="seconds of load (default %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=_count,
        default=Settings.workers,
        help="processes (default %(default)s); more than 1 needs --redis, --redis-cluster "
        "or --zookeeper",
    )
    parser.add_argument(
        "--shards",
        type=_shards,
        default=Settings.shards,
        help=f"SQLite databases users and orders are sharded over, 1..{MAX_SHARDS} "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--add-shard-at",
        type=_seconds,
        metavar="SECONDS",
        help="add one more SQLite shard this many seconds into the load and move its users "
        "to it while buyers run (scalekit.sharding.MigratingRouter)",
    )
    parser.add_argument(
        "--hot-stock",
        type=_count,
        default=Settings.hot_stock,
        help="units of each hot SKU (default %(default)s)",
    )
    parser.add_argument(
        "--redis",
        type=_redis_url(cluster=False),
        metavar="URL",
        help="share RedisLock locks and a NearCache over this standalone Redis "
        "(run it with appendonly yes, or a restart resets the fencing tokens)",
    )
    parser.add_argument(
        "--redis-cluster",
        type=_redis_url(cluster=True),
        metavar="URL",
        help="the same over a Redis Cluster (the URL of any node)",
    )
    parser.add_argument(
        "--zookeeper",
        type=_zookeeper_hosts,
        metavar="HOSTS",
        help="share ZooKeeperLock locks over this ZooKeeper (host:port,...)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=Settings.seed,
        help="seed of the buyers' choices and the gateways' failures (default %(default)s)",
    )
    parser.add_argument(
        "--data",
        type=_directory,
        metavar="DIR",
        help="keep the SQLite databases in DIR (default: a temporary directory); a second "
        "run on DIR reuses its catalog, stock and orders",
    )
    parser.add_argument(
        "--plot", type=Path, metavar="PNG", help="write checkout latency over time to this PNG"
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics on 127.0.0.1:PORT/metrics while the load runs "
        "(one worker; needs prometheus_client)",
    )
    parser.add_argument(
        "--metrics-linger",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="keep serving /metrics this long after the report, for a last scrape "
        "(default %(default)g)",
    )
    parser.add_argument(
        "--log-events",
        action="store_true",
        help="print scalekit's structured events (ejections, leases lost, a degraded near "
        "cache) on stderr as they happen; without it they go to the 'scalekit' logger only",
    )
    args = parser.parse_args(argv)
    if args.log_events:
        _log_events()
    if args.data is not None:
        problem = _unusable(args.data)
        if problem:
            parser.error(f"--data {str(args.data)!r}: {problem}")
    if args.plot is not None:
        try:  # before the run, not after it
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error(
                "--plot needs matplotlib, which is not installed: pip install -e '.[bench]'"
            )
        problem = _unwritable(args.plot)
        if problem:
            parser.error(f"--plot {str(args.plot)!r}: {problem}")
    if args.metrics_port is not None:
        if not 0 < args.metrics_port < 65536:
            parser.error(f"--metrics-port must be a port number 1..65535, got {args.metrics_port}")
        if args.workers > 1:
            parser.error("--metrics-port serves one process: give --workers 1")
        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            parser.error(
                "--metrics-port needs prometheus_client, which is not installed: "
                "pip install 'scalekit-primitives[prometheus]'"
            )
    if args.metrics_linger < 0 or (args.metrics_linger and args.metrics_port is None):
        parser.error("--metrics-linger takes seconds >= 0 and goes with --metrics-port")
    if args.duration <= 0:
        parser.error(f"--duration must be > 0, got {args.duration}")
    if args.add_shard_at is not None and not 0 <= args.add_shard_at < args.duration:
        parser.error(
            f"--add-shard-at must be within the load, 0 <= SECONDS < --duration "
            f"({args.duration:g}), got {args.add_shard_at:g}"
        )
    if sum(x is not None for x in (args.redis, args.redis_cluster, args.zookeeper)) > 1:
        parser.error("give one of --redis, --redis-cluster and --zookeeper")
    if args.workers > 1 and not (args.redis or args.redis_cluster or args.zookeeper):
        parser.error(
            f"--workers {args.workers} needs --redis, --redis-cluster or --zookeeper: "
            "in-memory locks do not cross processes"
        )
    if args.workers > args.buyers:
        parser.error(f"--workers ({args.workers}) must not exceed --buyers ({args.buyers})")
    for flag, given, driver, extra in (
        ("--redis", args.redis, "redis", "redis"),
        ("--redis-cluster", args.redis_cluster, "redis", "redis"),
        ("--zookeeper", args.zookeeper, "kazoo", "zookeeper"),
    ):
        if given is not None and not _importable(driver):
            print(
                f"python -m examples.shop: error: {flag} needs {driver}, which is not installed; "
                f"install it with pip install 'scalekit-primitives[{extra}]'",
                file=sys.stderr,
            )
            return 2
    settings = Settings(
        buyers=args.buyers,
        duration=args.duration,
        workers=args.workers,
        shards=args.shards,
        hot_stock=args.hot_stock,
        seed=args.seed,
        redis=args.redis,
        redis_cluster=args.redis_cluster,
        zookeeper=args.zookeeper,
        add_shard_at=args.add_shard_at,
    )
    metrics = None
    if args.metrics_port is not None:
        from .metrics import ShopMetrics

        metrics = ShopMetrics()
        try:
            metrics.serve(args.metrics_port)
        except OSError as exc:
            print(f"python -m examples.shop: error: --metrics-port: {exc}", file=sys.stderr)
            return 2
        print(f"metrics: http://127.0.0.1:{args.metrics_port}/metrics", flush=True)
    try:
        with temporary_directory() as tmp:
            directory = args.data if args.data is not None else Path(tmp)
            try:
                storage, summary = run(settings, directory, metrics)
            except (BackendUnavailableError, ConfigurationError) as exc:
                print(f"python -m examples.shop: error: {exc}", file=sys.stderr)
                return 2
            except (BackendError, sqlite3.OperationalError, OSError) as exc:  # before the load
                print(
                    f"python -m examples.shop: error: the data directory {str(directory)!r} "
                    f"cannot be used: {exc}",
                    file=sys.stderr,
                )
                return 2
            stage[0] = "while reporting: the load had ended and was swept"
            text, checked = report(storage, summary, settings)
            print(text)
            if args.plot is not None:
                plot(summary, args.plot)
                print(f"latency plot: {args.plot}")
            if metrics is not None and args.metrics_linger:
                print(f"serving /metrics for {args.metrics_linger:g} s more", flush=True)
                stage[0] = "while serving /metrics after the report"
                time.sleep(args.metrics_linger)
            return exit_status(storage, summary, checked)
    finally:
        if metrics is not None:
            metrics.close()


def _unwritable(path: Path) -> str:
    """Why the file *path* cannot be written ('' if it can), checked before the run."""
    if path.is_dir():
        return "expected a PNG file path, and it is a directory"
    parent = path.parent
    if not parent.exists():
        return f"expected a PNG path in an existing directory, and {str(parent)!r} does not exist"
    if not parent.is_dir():
        return (
            f"expected a PNG path in an existing directory, and {str(parent)!r} is not a directory"
        )
    if path.exists() and not os.access(path, os.W_OK):
        return "expected a writable file (it is read-only)"
    if not path.exists() and not os.access(parent, os.W_OK | os.X_OK):
        return f"expected a PNG path in a writable directory, and {str(parent)!r} is read-only"
    return ""


def _unusable(directory: Path) -> str:
    """Why *directory* cannot hold the databases ('' if it can)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        return "expected a directory, and it is a file"
    except OSError as exc:
        return f"cannot create it: {exc.strerror}"
    if not directory.is_dir():
        return "expected a directory"
    if not os.access(directory, os.W_OK | os.X_OK):
        return "expected a writable directory (it is read-only)"
    return ""


if __name__ == "__main__":
    raise SystemExit(main())
