"""The production posture: Django's deployment checks pass."""

import shlex
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.support import ROOT, WAIT, wait_until


def test_check_deploy_passes_in_production_mode(production_env):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


WEB_UNIT = ROOT / "deploy" / "systemd" / "fiches-web.service"


def unit_lines(prefix):
    return [line.removeprefix(prefix) for line in WEB_UNIT.read_text().splitlines() if line.startswith(prefix)]


def test_the_web_unit_runs_several_workers_that_share_a_redis():
    (exec_start,) = unit_lines("ExecStart=")
    assert "--workers ${WEB_CONCURRENCY}" in exec_start
    environment = " ".join(unit_lines("Environment="))
    assert "WEB_CONCURRENCY=4" in environment.split()
    assert "/opt/fiches/.venv/bin/python manage.py check --database default" in unit_lines(
        "ExecStartPre="
    )  # bad settings stop it
    example = (ROOT / "deploy" / "fiches.env.example").read_text().splitlines()
    assert any(line.startswith("REDIS_URL=redis://") for line in example)


@pytest.mark.slow
def test_the_web_units_command_starts_its_workers(production_env, tmp_path):
    """The unit's own ExecStart (its python, address and worker count aside) serves with two workers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (exec_start,) = unit_lines("ExecStart=")
    command = shlex.split(exec_start.replace("${WEB_CONCURRENCY}", "2"))
    command[0] = sys.executable
    command[command.index("--port") + 1] = str(port)
    log_path = tmp_path / "web.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=production_env, stdout=log, stderr=subprocess.STDOUT)
        try:

            def both_workers_serve():
                assert process.poll() is None, log_path.read_text()
                return log_path.read_text().count("Started server process") >= 2 and answers(port)

            wait_until(both_workers_serve, every=0.1, message="the web unit's workers did not start")
        finally:
            process.terminate()
            process.wait(30)
    assert "Started parent process" in log_path.read_text()


def answers(port):
    """Whether something answers HTTP on the port (production mode refuses this host: any status will do)."""
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=WAIT).close()
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True
