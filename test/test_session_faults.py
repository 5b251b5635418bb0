"""Faults injected for real into ``mile-ros sim`` and its launcher: signals to real processes, a full
filesystem on a tmpfs the test mounts, bad arguments, a second "host" in its own network namespace.

After each fault: the exit code, what was said, that no node process is left (``/proc`` scanned for
``mile_ros.nodes`` with the run's own directory or domain in its command line or environment), and
what is on disk.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("metaworld")

from sim_session import SIM_ARGS, sim_command, wait_line

from mile_ros.graph.topics import TOPICS
from mile_ros.nodes.probe import unique_domain_id

# --- helpers ---------------------------------------------------------------------------------------


def processes_with(marker: str) -> dict[int, str]:
    """Every process whose command line or environment contains ``marker`` (pid -> command line)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = Path(f"/proc/{entry}/environ").read_bytes().decode(errors="replace")
        except OSError:  # gone meanwhile, or a zombie
            continue
        if marker in cmdline or marker in environ:
            found[int(entry)] = cmdline
    return found


def node_processes(run: Path) -> dict[int, str]:
    """The run's node processes: their command line names the run's parameter file."""
    return {p: c for p, c in processes_with(str(run)).items() if "mile_ros.nodes." in c}


def wait_gone(run: Path, timeout: float = 30.0) -> dict[int, str]:
    deadline = time.monotonic() + timeout
    while (left := node_processes(run)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def kill_leftovers(run: Path) -> None:
    """So that a failing test does not leave its orphans to the next one."""
    for pid in node_processes(run):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def start_sim(run: Path, init: Path, domain: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        sim_command(run, init, domain, *extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.fixture
def run(tmp_path):
    path = tmp_path / "run"
    yield path
    kill_leftovers(path)


# --- item 1: any stop signal tears the whole graph down -------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_or_sighup_stops_the_whole_graph_and_says_so(run, init, sig):
    proc = start_sim(run, init, unique_domain_id())
    wait_line(proc, "eval episode 0")
    assert len(node_processes(run)) == 7, node_processes(run)
    sent = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, (proc.returncode, err[-2000:])
    assert f"stopped by {signal.Signals(sig).name}" in err and "resume" in err
    assert node_processes(run) == {}, "node processes outlived the launcher"
    assert time.monotonic() - sent < 30  # the SIGINT grace at most, not the whole escalation
    # On disk: the session's record and the logs; the stopped episode not recorded as done.
    state = json.loads((run / "session.json").read_text())
    assert all(e["name"] != "iter_000/train_000" for e in state["episodes"])
    assert (run / "logs" / "session_manager.log").is_file()


@pytest.mark.slow
def test_a_sigkilled_launcher_takes_its_nodes_with_it(run, init):
    proc = start_sim(run, init, unique_domain_id())
    wait_line(proc, "eval episode 0")
    nodes = node_processes(run)
    assert len(nodes) == 7, nodes
    proc.kill()  # no handler runs: only the kernel's parent-death signal can stop the nodes
    proc.communicate(timeout=10)
    left = wait_gone(run, timeout=30)
    assert left == {}, f"orphaned nodes: {left}"
    # Stopped, not killed: the session manager's record is whole and the episode it ran is not in it.
    state = json.loads((run / "session.json").read_text())
    assert [e["name"] for e in state["episodes"]] == ["iter_000/eval_000"]


@pytest.mark.slow
def test_a_killed_session_manager_is_named_with_its_signal(run, init):
    proc = start_sim(run, init, unique_domain_id())
    wait_line(proc, "eval episode 0")
    (manager,) = [p for p, c in node_processes(run).items() if "mile_ros.nodes.session_manager" in c]
    os.kill(manager, signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, (proc.returncode, err[-2000:])
    assert "node session_manager was killed by SIGKILL" in err
    assert node_processes(run) == {}


# --- item 6: every echoed line reaches the console and the log ------------------------------------

# A graph of one echoed "node": a real process that writes a burst of lines in one write (so they
# arrive together in the pipe), waits for the launcher's SIGINT and says goodbye without a newline.
RUNNER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from mile_ros.graph.launcher import NodeProcess, run_graph

    CHILD = '''
    import os, signal, sys, time
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))  # the burst goes out whole first
    burst = b"".join(b"burst line %d\\\\n" % i for i in range(int(sys.argv[1])))
    while burst:  # a write to a pipe interrupted by the signal returns short
        burst = burst[os.write(1, burst):]
    while not stop or os.environ.get("STUBBORN"):  # STUBBORN: ignores SIGINT, as a hung node would
        time.sleep(0.05)
    if int(sys.argv[2]):  # a long line: more than the free part of the log's last page
        os.write(1, b"x" * int(sys.argv[2]) + b"\\\\n")
    os.write(1, b"stopping now\\\\ngoodbye without newline")
    '''

    class Child(NodeProcess):
        def command(self):
            return [sys.executable, "-c", CHILD, sys.argv[2], sys.argv[3]]

    try:
        run_graph([Child("talker", echo=True)], "talker", Path(sys.argv[1]))
    except KeyboardInterrupt as exc:  # GraphSignalled is one
        print("RUNNER STOPPED BY", getattr(exc, "name", "?"), flush=True)
        sys.exit(getattr(exc, "exit_code", 130))
    """
)


def start_runner(
    tmp_path: Path, log_dir: Path, lines: int, long_line: int = 0, stubborn: bool = False
) -> subprocess.Popen:
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    env = {k: v for k, v in os.environ.items() if k != "STUBBORN"}
    return subprocess.Popen(
        [sys.executable, str(script), str(log_dir), str(lines), str(long_line)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**env, "STUBBORN": "1"} if stubborn else env,
    )


def finish(proc: subprocess.Popen, timeout: float = 30) -> tuple[bytes, str]:
    """The rest of stdout (through the reader that already holds part of it) and stderr."""
    rest = proc.stdout.read()  # until the launcher exits; its stderr is small enough to wait in the pipe
    err = proc.stderr.read().decode()
    proc.wait(timeout=timeout)
    return rest, err


def children_of(pid: int) -> list[int]:
    return [p for p, c in processes_with("burst line").items() if p != pid and "-c" in c]


@pytest.mark.parametrize("lines", [3, 20000])
def test_every_echoed_line_reaches_console_and_log(tmp_path, lines):
    logs = tmp_path / "logs"
    proc = start_runner(tmp_path, logs, lines)
    first = proc.stdout.readline()
    assert first == b"burst line 0\n", first + proc.stderr.read()
    time.sleep(1.0)  # the rest of the burst is in the launcher's hands now (or lost, as it was)
    proc.send_signal(signal.SIGINT)
    rest, err = finish(proc)
    assert proc.returncode == 130, err
    console = (first + rest).decode().splitlines()
    expected = [f"burst line {i}" for i in range(lines)] + ["stopping now", "goodbye without newline"]
    assert console == [*expected, "RUNNER STOPPED BY SIGINT"]
    assert (logs / "talker.log").read_text().splitlines() == expected


def test_a_second_signal_cuts_the_grace_short(tmp_path):
    """A node that ignores SIGINT holds the stop for the 10 s grace; a second signal moves on to SIGTERM."""
    proc = start_runner(tmp_path, tmp_path / "logs", 3, stubborn=True)
    assert proc.stdout.readline() == b"burst line 0\n"
    proc.send_signal(signal.SIGINT)
    time.sleep(2.0)
    assert proc.poll() is None, "the launcher did not wait for its node"
    second = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = finish(proc)
    assert time.monotonic() - second < 4.0, "the second signal did not cut the grace short"
    assert proc.returncode == 130, err  # the first signal is the one that stopped the graph
    assert children_of(proc.pid) == []


# --- item 6: a full disk does not kill the teardown -----------------------------------------------


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "64k"):
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    assert mounted.returncode == 0, f"cannot mount a tmpfs (needs root): {mounted.stderr.decode()}"
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def fill(path: Path) -> None:
    with contextlib.suppress(OSError), open(path / "filler", "wb", buffering=0) as f:
        while True:
            f.write(b"\0" * 4096)


def test_a_full_disk_under_the_logs_does_not_stop_the_teardown(tmp_path):
    with small_tmpfs(tmp_path / "logs") as logs:
        proc = start_runner(tmp_path, logs, 3, long_line=20000)
        first = proc.stdout.readline()
        assert first == b"burst line 0\n", first + proc.stderr.read()
        fill(logs)  # the goodbye lines written during the stop no longer fit
        proc.send_signal(signal.SIGINT)
        rest, err = finish(proc)
        assert proc.returncode == 130, err
        assert "Traceback" not in err
        assert err.count("could not write") == 1 and "No space left on device" in err
        console = (first + rest).decode().splitlines()
        assert console[1:] == [
            "burst line 1",
            "burst line 2",
            "x" * 20000,
            "stopping now",
            "goodbye without newline",
            "RUNNER STOPPED BY SIGINT",
        ]
        assert children_of(proc.pid) == []


@pytest.mark.slow
def test_a_session_whose_log_disk_fills_up_still_stops_cleanly(run, init):
    """The real graph with its logs on a small tmpfs that is full (the nodes' log files can be
    created, not written), then Ctrl-C."""
    with small_tmpfs(run / "logs", "64k") as logs:
        fill(logs)
        proc = start_sim(run, init, unique_domain_id())
        # The lines still reach the console, the log's failure is told once, the session goes on.
        wait_line(proc, "eval episode 0")
        wait_line(proc, "train episode 0")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 130, (out[-2000:], err[-3000:])
        assert "Traceback" not in err
        assert err.count("could not write") == 1 and "session_manager.log" in err, err[-3000:]
        assert node_processes(run) == {}
        episodes = [e["name"] for e in json.loads((run / "session.json").read_text())["episodes"]]
        assert episodes[:2] == ["iter_000/eval_000", "iter_000/train_000"]


# --- item 7: validate before acting ----------------------------------------------------------------


def sim(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    # As the installed `mile-ros` runs it (`-m mile_ros.cli.main` adds a runpy warning to stderr).
    return subprocess.run(
        [sys.executable, "-c", "import sys; from mile_ros.cli.main import main; sys.exit(main())", "sim", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() if p.is_file() else b"" for p in sorted(path.rglob("*"))}


def test_bad_arguments_are_refused_before_anything_is_written(tmp_path, init):
    cases = [
        (["--task", "drawer-opn-v3", "--out", str(tmp_path / "a" / "run")], "unknown task 'drawer-opn-v3'"),
        (["--out", "/proc/x"], "--out /proc/x: cannot create it"),
        (["--out", "/proc/x/y"], "--out /proc/x/y: cannot create it"),
        (["--out", str(init)], "is not a directory"),
        (["--out", str(tmp_path / "b"), "--init-policy", str(tmp_path / "nope.pt")], "does not exist"),
        (["--out", str(tmp_path / "c"), "--iterations", "0"], "--iterations >= 1"),
    ]
    before = tree(tmp_path)
    for args, message in cases:
        done = sim(*args)
        assert done.returncode == 2, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and "Traceback" not in done.stderr, (args, done.stderr)
    assert tree(tmp_path) == before
    assert not Path("/proc/x").exists()


@pytest.mark.slow
def test_a_resume_with_other_settings_changes_nothing(tmp_path, init):
    from mile_ros.graph.session import SessionConfig, SessionState

    run = tmp_path / "run"
    run.mkdir()
    SessionState.open(run, SessionConfig(iterations=1, episodes=1, eval_episodes=1, seed=0), "drawer-open-v3")
    (run / "run_params.yaml").write_text("the first run's parameters\n")
    before = tree(run)
    for args, message in [
        (["--task", "door-open-v3"], "is a session of task 'drawer-open-v3', not 'door-open-v3'"),
        (["--seed", "3"], "resume it with the same settings"),
    ]:
        done = sim(*SIM_ARGS, "--out", str(run), "--init-policy", str(init), *args)
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert tree(run) == before


# --- item 8: domain ids ----------------------------------------------------------------------------


@pytest.mark.slow
def test_domain_ids_outside_0_to_101_are_refused(tmp_path):
    for bad in ("102", "233", "250", "-1"):
        done = sim("--out", str(tmp_path / "run"), "--domain-id", bad)
        assert done.returncode == 2 and "0-101" in done.stderr, done.stderr
        env = {**os.environ, "ROS_DOMAIN_ID": bad}
        done = sim("--out", str(tmp_path / "run"), env=env)
        assert done.returncode == 2 and "ROS_DOMAIN_ID" in done.stderr and "0-101" in done.stderr, done.stderr
    assert not (tmp_path / "run").exists()
    assert "0-101" in sim("--help").stdout


def test_the_random_domain_is_safe_and_avoids_busy_ones():
    import random

    from mile_ros.cli.sim import pick_domain_id
    from mile_ros.graph.launcher import domains_in_use

    rng = random.Random(0)
    picks = {pick_domain_id(rng) for _ in range(2000)}
    assert picks <= set(range(1, 102)) and len(picks) > 50
    # A domain whose discovery port is bound here is in use and is not picked.
    import socket

    busy = 77
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 7400 + 250 * busy + 11))
        assert busy in domains_in_use()
        assert busy not in {pick_domain_id(rng) for _ in range(2000)}


# --- item 10: the session is private to its host ---------------------------------------------------


def node_sockets(pid: int) -> list[str]:
    """Local addresses (hex, /proc/net form) of the UDP/TCP sockets ``pid`` holds."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = []
    for table in ("udp", "tcp", "udp6", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            cols = line.split()
            if cols[9] in inodes:
                found.append(f"{table} {cols[1]}")
    return found


def domain_sockets(pid: int, domain: int) -> list[str]:
    """The sockets ``pid`` holds on its domain's well-known ports (7400 + 250 x domain + 0..249: where
    DDS listens for discovery and data), as table ip:port."""
    ports = range(7400 + 250 * domain, 7400 + 250 * (domain + 1))
    out = []
    for sock in node_sockets(pid):
        table, address = sock.split()
        ip, port = address.rsplit(":", 1)
        if int(port, 16) in ports:
            out.append(f"{table} {ip}:{int(port, 16)}")
    return out


OUTSIDER = textwrap.dedent(
    """
    import sys, time, rclpy
    rclpy.init()
    node = rclpy.create_node("outsider")
    seen = set()
    deadline = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.2)
        seen |= {name for name, _ in node.get_topic_names_and_types()}
    print(" ".join(sorted(seen)))
    """
)

INSIDER = textwrap.dedent(
    """
    import time, rclpy
    from std_msgs.msg import String
    rclpy.init()
    node = rclpy.create_node("insider")
    pub = node.create_publisher(String, "/teleop/not_private", 10)
    print("up", flush=True)
    while True:
        pub.publish(String(data="x"))
        rclpy.spin_once(node, timeout_sec=0.2)
    """
)


@contextlib.contextmanager
def other_host():
    """A network namespace joined to this one by a veth pair: to DDS, another host at 10.231.x.2."""
    name = f"mileout{os.getpid()}"
    veth = f"mv{os.getpid() % 100000}"
    here, there = "10.231.7.1", "10.231.7.2"
    steps = [
        ["ip", "netns", "add", name],
        ["ip", "link", "add", veth, "type", "veth", "peer", "name", veth + "p"],
        ["ip", "link", "set", veth + "p", "netns", name],
        ["ip", "addr", "add", f"{here}/24", "dev", veth],
        ["ip", "link", "set", veth, "up"],
        ["ip", "netns", "exec", name, "ip", "addr", "add", f"{there}/24", "dev", veth + "p"],
        ["ip", "netns", "exec", name, "ip", "link", "set", veth + "p", "up"],
        ["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
    ]
    try:
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True)
            assert done.returncode == 0, f"{' '.join(step)}: {done.stderr} (needs root / CAP_NET_ADMIN)"
        yield name, here
    finally:
        subprocess.run(["ip", "link", "del", veth], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def outsider_sees(netns: str, peer: str, domain: int, seconds: float = 8.0) -> set[str]:
    """Topics a participant on the other host finds when it names this host as its static peer."""
    env = {
        **os.environ,
        "ROS_DOMAIN_ID": str(domain),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET",
        "ROS_STATIC_PEERS": peer,
    }
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    done = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", OUTSIDER, str(seconds)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return set(done.stdout.split())


@pytest.mark.slow
def test_a_session_is_private_to_its_host(run, init):
    domain = unique_domain_id()
    with other_host() as (netns, here):
        # Control: a participant with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST alone (the old
        # default) is reachable from the other host, so the check below can fail.
        env = {**os.environ, "ROS_DOMAIN_ID": str(domain + 1), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
        env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
        insider = subprocess.Popen([sys.executable, "-c", INSIDER], env=env, stdout=subprocess.PIPE, text=True)
        try:
            assert insider.stdout.readline() == "up\n"
            assert "/teleop/not_private" in outsider_sees(netns, here, domain + 1)
        finally:
            insider.kill()
            insider.wait()

        proc = start_sim(run, init, domain)
        try:
            lines = wait_line(proc, "eval episode 0")
            assert "private to this host" in "".join(lines)
            # Every node listens for DDS on loopback only (127.0.0.1 = 0100007F).
            for pid in node_processes(run):
                dds = domain_sockets(pid, domain)
                assert dds and all(" 0100007F:" in s for s in dds), (pid, dds)
            seen = outsider_sees(netns, here, domain)
            assert not seen & set(TOPICS), f"the other host sees the session's topics {seen & set(TOPICS)}"
        finally:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=60)
    assert (run / "fastdds_loopback.xml").is_file()
    assert node_processes(run) == {}
