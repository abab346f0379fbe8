#!/usr/bin/env python3
"""Test data for tests/bench/run.sh: N services as plaintext YAML, and the
same data as an ansible encrypt_string file.

  gen.py plain N OUT          SERVICE_i: {USERNAME, PASSWORD} (2N values)
  gen.py ansible N PWFILE OUT the same, every value `!vault |` encrypted with
                              ansible's own VaultLib (one PBKDF2 run per
                              value). Above N=1000 only the services that
                              the benchmark reads (every N/20-th and N/2)
                              get their own ciphertext; the others reuse one
                              blob, so the file has the real shape and size
                              without hours of KDF runs.
"""
import sys


def password(i):
    return "pw-%08d-%016x" % (i, (i * 0x9E3779B97F4A7C15) % (1 << 64))


def plain(n, out):
    with open(out, "w") as f:
        for i in range(n):
            f.write("SERVICE_%d:\n  USERNAME: user_%d\n  PASSWORD: %s\n" % (i, i, password(i)))


def ansible(n, pwfile, out):
    from ansible.parsing.vault import VaultLib, VaultSecret

    secret = VaultSecret(open(pwfile, "rb").read().strip())
    vault = VaultLib([("default", secret)])
    read = {n // 2} | {i * n // 20 for i in range(20)}

    def blob(text):
        body = vault.encrypt(text.encode()).decode()
        return "!vault |\n" + "".join("    %s\n" % line for line in body.splitlines())

    shared = blob("shared") if n > 1000 else None
    with open(out, "w") as f:
        for i in range(n):
            real = shared is None or i in read
            user = blob("user_%d" % i) if real else shared
            pw = blob(password(i)) if real else shared
            f.write("SERVICE_%d:\n  USERNAME: %s  PASSWORD: %s" % (i, user, pw))


if __name__ == "__main__":
    if sys.argv[1] == "plain":
        plain(int(sys.argv[2]), sys.argv[3])
    else:
        ansible(int(sys.argv[2]), sys.argv[3], sys.argv[4])
