"""The model id and revision rules, held to the real judges: huggingface_hub's validate_repo_id and
`git check-ref-format`."""

import subprocess

import pytest

from ansible_collections.datacrunch.sglang.plugins.module_utils.hub.names import (
    REPO_ID_RULE,
    REVISION_RULE,
    repo_id_problem,
    revision_problem,
)

hub_validators = pytest.importorskip("huggingface_hub.utils._validators")

REPO_IDS = [
    "deepseek-ai/DeepSeek-R1", "gpt2", "Foo-BAR_foo.bar123", "123", "a/b", "datacrunch-lab/tiny-deepseek-r1",
    "not a repo id", "", "a/b/c", "/a", "a/", ".repo", "repo.", "-x/y", "x/y-", "foo--bar", "foo..bar", "foo.git",
    "x" * 96, "x" * 97, "ns/" + "x" * 97, "café/model", "org/mod el", "org\\model", "org/model\n", "a_/b", "_a/_b",
]
REVISIONS = [
    "main", "v1.0", "refs/pr/1", "release/2025-01", "56d4cbbb4d29f4355bab4b9a39ccb717a14ad5ad", "a.lock.b",
    "", "a b", "a..b", "a~1", "a^", "a:b", "a?", "a*", "a[b", "a\\b", "@", "a@{1}", "/main", "main/", "a//b",
    ".hidden", "x/.y", "x.lock", "x/y.lock", "main.", "tab\there", "del\x7f", "@x", "HEAD",
]


def hub_accepts(repo_id):
    try:
        hub_validators.validate_repo_id(repo_id)
    except hub_validators.HFValidationError:
        return False
    return True


def git_accepts(name):
    run = subprocess.run(["git", "check-ref-format", "--allow-onelevel", name], capture_output=True, check=False)
    return run.returncode == 0


@pytest.mark.parametrize("repo_id", REPO_IDS)
def test_model_ids_are_judged_as_huggingface_hub_judges_them(repo_id):
    assert (repo_id_problem(repo_id) == "") == hub_accepts(repo_id)


@pytest.mark.parametrize("revision", REVISIONS)
def test_revisions_are_judged_as_git_judges_ref_names(revision):
    assert (revision_problem(revision) == "") == git_accepts(revision)


def test_the_message_names_the_variable_the_value_and_the_rule():
    message = repo_id_problem("not a repo id")
    assert message.startswith("sglang_model='not a repo id' is not a Hugging Face model id: ")
    assert REPO_ID_RULE in message
    message = revision_problem("a b", variable="the revision of profile 'x'")
    assert message.startswith("the revision of profile 'x'='a b' is not a revision: ")
    assert REVISION_RULE in message
    assert revision_problem(None) and repo_id_problem(None)
