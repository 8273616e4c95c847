"""Schemathesis hooks for scripts/schemathesis.sh: a schema-valid request
may name profiles, but only the caller's own exist (the server answers 400
PROFILE_NOT_FOUND otherwise, as docs/rules.md asks). A positive case's profile
ids are mapped onto the profiles the script seeded, so that it tests
acceptance rather than the store's contents."""

import hypothesis.internal.lambda_sources as lambda_sources
import schemathesis
from schemathesis import GenerationMode

# CPython 3.11.7 (pyenv's here) can raise "SystemError: AST constructor
# recursion depth mismatch" from ast.parse deep in a stack (a CPython bug);
# hypothesis parses a lambda's source only to name it in a strategy's repr,
# so a name it cannot get becomes the generic one instead of an error.
_describe = lambda_sources.lambda_description


def _lambda_description(f):
    try:
        return _describe(f)
    except SystemError:
        return "lambda"


lambda_sources.lambda_description = _lambda_description

# Seeded by scripts/schemathesis.sh.
PROFILES = ["prof_vzfin", "prof_coding"]


@schemathesis.hook
def map_case(context, case):
    _keeps_seeded_profiles(case)
    meta = case.meta
    if meta is None or meta.generation.mode != GenerationMode.POSITIVE:
        return case
    body = case.body
    if not isinstance(body, dict):
        return case
    ids = body.get("profile_ids")
    if isinstance(ids, list):
        body["profile_ids"] = [PROFILES[i % len(PROFILES)] for i in range(len(ids))]
    elif body.get("scope") == "agents" and case.method.upper() == "PATCH":
        # Scope `agents` alone keeps the row's list, which may be empty.
        body["profile_ids"] = PROFILES[:1]
    if case.operation.path in ("/v1/sessions", "/v1/notifications") and isinstance(
        body.get("profile_id"), str
    ):
        body["profile_id"] = PROFILES[0]
    if isinstance(body.get("bound_profile_id"), str):
        body["bound_profile_id"] = PROFILES[0]
    return case


def _keeps_seeded_profiles(case):
    # The seeded profiles stay: the cases above name them. A DELETE of one
    # becomes a DELETE of a profile that does not exist (404), rather than
    # being filtered out, which starves hypothesis of cases when the stateful
    # phase links every listed profile id into the DELETE.
    if (
        case.method.upper() == "DELETE"
        and case.operation.path == "/v1/profiles/{id}"
        and case.path_parameters.get("id") in PROFILES
    ):
        case.path_parameters["id"] = "prof_never_seeded"
