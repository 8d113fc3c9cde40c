"""The Docker image's entrypoint, run without Docker: it turns the official
`zookeeper` image's environment variables into zoo.cfg and myid, and a
standalone server or a 3-server ensemble configured that way serves
(issue 13: packages people install)."""
import os
import shutil
import subprocess
import tempfile
import time

import pytest
from kazoo.client import KazooClient

from conftest import ROOST_BIN, ROOT, four_letter, free_port

ENTRYPOINT = os.path.join(ROOT, "packaging", "docker", "docker-entrypoint.sh")


@pytest.fixture
def scratch():
    """Makes temporary folders, deleted after the test (a server's
    preallocated log takes ~200 MB)."""
    made = []

    def make(prefix):
        made.append(tempfile.mkdtemp(prefix=prefix))
        return made[-1]

    yield make
    for folder in made:
        shutil.rmtree(folder, ignore_errors=True)


def entrypoint_env(base, **variables):
    env = dict(os.environ)
    for key in list(env):
        if key.startswith("ZOO_"):
            del env[key]
    env.update(
        ZOO_CONF_DIR=os.path.join(base, "conf"),
        ZOO_DATA_DIR=os.path.join(base, "data"),
        ZOO_DATA_LOG_DIR=os.path.join(base, "datalog"),
        PATH=os.path.dirname(ROOST_BIN) + os.pathsep + env.get("PATH", ""),
    )
    env.update(variables)
    return env


def run_entrypoint(env, *command):
    return subprocess.run(
        [ENTRYPOINT, *command], env=env, check=True, capture_output=True, text=True, timeout=30
    )


def wait_imok(port, limit=30):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            if four_letter(port, "ruok") == "imok":
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def test_the_environment_becomes_zoo_cfg_and_myid_once(scratch):
    base = scratch("roost-entrypoint-")
    servers = "server.1=zoo1:2888:3888;2181 server.2=zoo2:2888:3888;2181 server.3=zoo3:2888:3888;2181"
    env = entrypoint_env(
        base,
        ZOO_MY_ID="2",
        ZOO_SERVERS=servers,
        ZOO_TICK_TIME="1000",
        ZOO_4LW_COMMANDS_WHITELIST="ruok,srvr,mntr",
        ZOO_CFG_EXTRA="reconfigEnabled=true snapCount=5000",
    )
    run_entrypoint(env, "true")
    config = open(os.path.join(base, "conf", "zoo.cfg")).read().splitlines()
    assert config == [
        "dataDir=%s/data" % base,
        "dataLogDir=%s/datalog" % base,
        "tickTime=1000",
        "initLimit=5",
        "syncLimit=2",
        "autopurge.snapRetainCount=3",
        "autopurge.purgeInterval=0",
        "maxClientCnxns=60",
        "standaloneEnabled=true",
        "admin.enableServer=true",
        "server.1=zoo1:2888:3888;2181",
        "server.2=zoo2:2888:3888;2181",
        "server.3=zoo3:2888:3888;2181",
        "4lw.commands.whitelist=ruok,srvr,mntr",
        "reconfigEnabled=true",
        "snapCount=5000",
    ]
    assert open(os.path.join(base, "data", "myid")).read() == "2\n"
    # A second start keeps what is there (a mounted config, an existing myid).
    run_entrypoint(dict(env, ZOO_MY_ID="3", ZOO_TICK_TIME="5"), "true")
    assert open(os.path.join(base, "conf", "zoo.cfg")).read().splitlines() == config
    assert open(os.path.join(base, "data", "myid")).read() == "2\n"


def test_the_default_environment_runs_a_standalone_server(scratch):
    base = scratch("roost-entrypoint-")
    port = free_port()
    # As the image's default, with a free client port in the server line.
    env = entrypoint_env(
        base,
        ZOO_SERVERS="server.1=127.0.0.1:%d:%d;%d" % (free_port(), free_port(), port),
        ZOO_4LW_COMMANDS_WHITELIST="ruok,srvr",
    )
    log = open(os.path.join(base, "roost.log"), "w")
    # The official image's command spelled out, as some manifests do.
    proc = subprocess.Popen(
        [ENTRYPOINT, "zkServer.sh", "start-foreground"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        assert wait_imok(port), open(log.name).read()
        assert "Mode: standalone" in four_letter(port, "srvr")
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_three_server_ensemble_from_zoo_servers(scratch):
    ports = [(free_port(), free_port(), free_port()) for _ in range(3)]
    servers = " ".join(
        "server.%d=127.0.0.1:%d:%d;127.0.0.1:%d" % (i + 1, peer, election, client)
        for i, (peer, election, client) in enumerate(ports)
    )
    procs = []
    try:
        for i in range(3):
            base = scratch("roost-entrypoint-%d-" % (i + 1))
            env = entrypoint_env(
                base, ZOO_MY_ID=str(i + 1), ZOO_SERVERS=servers, ZOO_4LW_COMMANDS_WHITELIST="*"
            )
            log = open(os.path.join(base, "roost.log"), "w")
            procs.append(
                subprocess.Popen(
                    [ENTRYPOINT, ROOST_BIN, "server", "--config", os.path.join(base, "conf", "zoo.cfg")],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        for _, _, client in ports:
            assert wait_imok(client)
        modes = sorted(
            line
            for _, _, client in ports
            for line in four_letter(client, "srvr").splitlines()
            if line.startswith("Mode:")
        )
        assert modes == ["Mode: follower", "Mode: follower", "Mode: leader"]
        zk = KazooClient(hosts=",".join("127.0.0.1:%d" % c for _, _, c in ports), timeout=10)
        zk.start(timeout=10)
        zk.create("/from-the-image", b"v")
        zk.stop()
        one = KazooClient(hosts="127.0.0.1:%d" % ports[2][2], timeout=10)
        one.start(timeout=10)
        one.sync("/from-the-image")
        assert one.get("/from-the-image")[0] == b"v"
        one.stop()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


def test_logs_go_to_daily_files_with_log_dir(scratch):
    base = scratch("roost-logs-")
    port = free_port()
    logs = os.path.join(base, "logs")
    proc = subprocess.Popen(
        [ROOST_BIN, "server", "--port", str(port), "--data-dir", os.path.join(base, "data"), "--log-dir", logs],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert wait_imok(port)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    assert err == b"" and out == b"", "nothing on the console"
    files = os.listdir(logs)
    assert len(files) == 1 and files[0].startswith("roost.log."), files
    text = open(os.path.join(logs, files[0])).read()
    assert "serving clients on 0.0.0.0:%d" % port in text, text
    assert "\x1b[" not in text, "no terminal colours in files"
