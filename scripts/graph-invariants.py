#!/usr/bin/env python3
"""The invariants the dependency graph keeps (ARCHITECTURE.md), checked.

- `resolver` depends on neither `vault` nor rmcp, axum or hyper: it cannot
  name a key, and serves no MCP;
- `model` has no I/O dependency (no runtime, database, HTTP or socket crate);
- only `common/providers` reads a provider's base URL (`*_API_BASE`,
  `GOOGLE_TOKEN_URL`, ...): tests, benchmarks, examples and the fakes may
  set them;
- every crate of the workspace takes `[workspace.lints]`, which forbids
  `unsafe_code`.

Run from anywhere in the repository: `python3 scripts/graph-invariants.py`.
Exits 1, listing every broken rule, when one is broken.
"""

import pathlib
import re
import subprocess
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent

# The normal dependencies (transitive) a crate must not have.
FORBIDDEN = {
    "resolver": {"vault", "rmcp", "axum", "hyper"},
    "model": {
        "tokio", "mio", "socket2", "sqlx", "rusqlite", "libsqlite3-sys",
        "reqwest", "hyper", "axum", "rmcp", "tracing-subscriber",
    },
}

# Environment variables that hold a provider's address.
PROVIDER_URL = re.compile(
    r'"(TELLER_API_BASE|GMAIL_API_BASE|GOOGLE_TOKEN_URL|GOOGLE_REVOKE_URL|'
    r'GOOGLE_AUTH_URL|SLACK_API_BASE|SLACK_OAUTH_URL|TELEGRAM_API_BASE|'
    r'RESEND_API_BASE|TELLER_CONNECT_URL)"'
)

# Where reading one is allowed: the providers' crate, and code that only
# sets or passes them (tests, benchmarks, examples, the fakes, the fuzz
# targets).
ALLOWED_DIRS = ("common/providers/", "tests/", "benches/", "examples/", "fuzz/")


def normal_dependencies(package: str) -> set[str]:
    """The crates `package` depends on, transitively, as built (not for its
    tests or build scripts)."""
    tree = subprocess.run(
        ["cargo", "tree", "-p", package, "-e", "normal", "--prefix", "none",
         "--format", "{p}", "--locked"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    return {line.split()[0] for line in tree.splitlines() if line.strip()}


def workspace_manifests() -> list[pathlib.Path]:
    root = tomllib.loads((ROOT / "Cargo.toml").read_text())
    members = root["workspace"]["members"]
    return [ROOT / member / "Cargo.toml" for member in members]


def main() -> int:
    broken = []
    for package, forbidden in FORBIDDEN.items():
        found = normal_dependencies(package) & forbidden
        if found:
            broken.append(f"{package} depends on {', '.join(sorted(found))}")

    for path in sorted(ROOT.rglob("*.rs")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith("target/") or "/target/" in relative:
            continue
        if any(relative.startswith(d) or f"/{d}" in relative for d in ALLOWED_DIRS):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if PROVIDER_URL.search(line) and "var" in line:
                broken.append(
                    f"{relative}:{number} reads a provider's base URL outside common/providers"
                )

    root = tomllib.loads((ROOT / "Cargo.toml").read_text())
    if root.get("workspace", {}).get("lints", {}).get("rust", {}).get("unsafe_code") != "forbid":
        broken.append("[workspace.lints.rust] does not forbid unsafe_code")
    for manifest in workspace_manifests():
        lints = tomllib.loads(manifest.read_text()).get("lints", {})
        if lints.get("workspace") is not True:
            broken.append(f"{manifest.relative_to(ROOT)} does not take [workspace.lints]")

    for line in broken:
        print(f"graph invariant broken: {line}", file=sys.stderr)
    if not broken:
        print("graph invariants: ok")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
