# The connection the fleet tests (tests/engine/fleet.rs) reach their host
# containers with: `docker exec -i CONTAINER /bin/sh -c CMD`, files through
# the same pipe. It does what the community.docker.docker connection does,
# in the few lines the tests need, because that collection is not in
# ansible-core and the full `ansible` package that carries it costs 50 s and
# 550 MB per CI run (docs/fleet.md, "How the tests reach their hosts").
# Real fleets use Ansible's default `ssh` connection; nothing in the role
# depends on this one.

from __future__ import annotations

import subprocess

from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.plugins.connection import ConnectionBase
from ansible.utils.display import Display

DOCUMENTATION = """
name: docker_exec
short_description: run tasks in a local container with docker exec
description:
  - Test connection of runvault's fleet tests; the container is the
    inventory host's name (or ansible_host).
author: runvault
options:
  remote_addr:
    description: the container's name
    default: inventory_hostname
    vars:
      - name: inventory_hostname
      - name: ansible_host
"""

display = Display()


class Connection(ConnectionBase):
    """Runs each command with `docker exec -i` in the inventory host's container."""

    transport = "docker_exec"
    has_pipelining = True

    def _container(self) -> str:
        return self.get_option("remote_addr")

    def _connect(self):
        if not self._connected:
            display.vvv("docker exec into %s" % self._container(), host=self._container())
            self._connected = True
        return self

    def exec_command(self, cmd, in_data=None, sudoable=False):
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        argv = ["docker", "exec", "-i", self._container(), "/bin/sh", "-c", cmd]
        display.vvv("EXEC %s" % argv, host=self._container())
        try:
            done = subprocess.run(argv, input=in_data or b"", capture_output=True, check=False)
        except OSError as err:
            raise AnsibleConnectionFailure("cannot run docker: %s" % err) from err
        self._check_reached(done)
        return done.returncode, done.stdout, done.stderr

    def _check_reached(self, done):
        # A stopped, paused or missing container is an unreachable host (as
        # ssh's "connection refused" is), not a failed task.
        gone = (b"is not running", b"is paused", b"No such container")
        if done.returncode != 0 and any(word in done.stderr for word in gone):
            raise AnsibleConnectionFailure(done.stderr.decode(errors="replace").strip())

    def put_file(self, in_path, out_path):
        super().put_file(in_path, out_path)
        display.vvv("PUT %s TO %s" % (in_path, out_path), host=self._container())
        argv = ["docker", "exec", "-i", self._container(), "/bin/sh", "-c", 'cat > "$1"', "sh", out_path]
        with open(in_path, "rb") as source:
            done = subprocess.run(argv, stdin=source, capture_output=True, check=False)
        self._check_reached(done)
        if done.returncode != 0:
            raise AnsibleError("cannot put %s: %s" % (out_path, done.stderr.decode(errors="replace")))

    def fetch_file(self, in_path, out_path):
        super().fetch_file(in_path, out_path)
        display.vvv("FETCH %s TO %s" % (in_path, out_path), host=self._container())
        argv = ["docker", "exec", self._container(), "cat", in_path]
        with open(out_path, "wb") as target:
            done = subprocess.run(argv, stdout=target, stderr=subprocess.PIPE, check=False)
        if done.returncode != 0:
            raise AnsibleError("cannot fetch %s: %s" % (in_path, done.stderr.decode(errors="replace")))

    def close(self):
        self._connected = False
