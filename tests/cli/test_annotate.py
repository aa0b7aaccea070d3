"""`flyte-resources-webhook annotate`: annotations from flags, in three output forms, never ones the webhook denies."""

from __future__ import annotations

import json
import shlex

import pytest
import yaml

from webhook.mutation.annotations import read_annotations

P = "resources.flyte.org/"


def test_yaml_json_and_flags_say_the_same(cli) -> None:
    flags = ["annotate", "--cpu", "2:4", "--memory", "8Gi", "--gpu", "A100:2", "--shm", "auto"]
    expected = {P + "resources": "cpu=2:4,memory=8Gi,gpu=A100:2,shm=auto"}
    as_yaml = cli(*flags)
    assert as_yaml.returncode == 0, as_yaml.stderr
    assert yaml.safe_load(as_yaml.stdout) == expected
    assert json.loads(cli(*flags, "-o", "json").stdout) == expected
    words = shlex.split(cli(*flags, "-o", "flags").stdout)
    assert words == ["--annotations", f"{P}resources=cpu=2:4,memory=8Gi,gpu=A100:2,shm=auto"]
    # pyflyte run splits each --annotations value at its first '='
    key, _, value = words[1].partition("=")
    assert {key: value} == expected


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (
            ["--gpu", "H100:1", "--partition", "1g.10gb"],
            {P + "resources": '{"gpu":{"device":"H100","quantity":1,"partition":"1g.10gb","device_class":"GPU"}}'},
        ),
        (
            ["--gpu", "V6E", "--partition", "2x4"],
            {P + "resources": '{"gpu":{"device":"V6E","quantity":1,"partition":"2x4","device_class":"TPU"}}'},
        ),
        (
            ["--cpu", "1", "--accelerator", "A100.partition_1g_5gb", "--shared-memory", "true"],
            {P + "resources": "cpu=1", P + "accelerator": "A100.partition_1g_5gb", P + "shared-memory": "true"},
        ),
        (["--gpu", "Trn1:16", "--container", "main"], {P + "resources": "gpu=Trn1:16", P + "container": "main"}),
        (["--disk", "10Gi", "--prefix", "example.com/"], {"example.com/resources": "disk=10Gi"}),
    ],
)
def test_annotate(cli, flags: list[str], expected: dict[str, str]) -> None:
    done = cli("annotate", *flags, "-o", "json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result == expected
    prefix = next(iter(result)).rsplit("/", 1)[0] + "/"
    assert read_annotations(result, prefix) is not None  # the webhook reads it


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--gpu", "A100:1000"], "'A100:1000': A100 comes in counts of 1 to 999"),
        (["--gpu", "T4:1", "--partition", "1g.5gb"], "T4 has no partitions"),
        (["--gpu", "A100:1", "--partition", "1g.10gb"], "Invalid partition for A100: 1g.10gb"),
        (["--partition", "2x4"], "--partition and --device-class need --gpu with a type"),
        (["--cpu", "abc"], "Resources.cpu: 'abc' is not a valid Kubernetes quantity"),
        (["--shm", "lots"], "shm: expected a size like '2Gi' or 'auto'"),
        ([], "nothing to annotate"),
        (
            ["--gpu", "A100:2", "--accelerator", "H100"],
            f"{P}accelerator='H100': contradicts the gpu device of {P}resources (A100 there, H100 here)",
        ),
    ],
)
def test_annotate_refuses_what_the_webhook_would_deny(cli, flags: list[str], message: str) -> None:
    done = cli("annotate", *flags)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""


def test_help_has_examples(cli) -> None:
    done = cli("annotate", "--help")
    assert done.returncode == 0 and "examples:" in done.stdout and "pyflyte run" in done.stdout


@pytest.mark.parametrize("prefix", ["evil", "Evil.org/", "a/b/", "-x.org/", "x..org/", "/"])
def test_annotate_refuses_a_prefix_the_webhook_would_never_read(
    prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from webhook.cli import main as cli_main

    assert cli_main(["annotate", "--cpu", "1", f"--prefix={prefix}"]) == 2
    assert "must be a DNS subdomain followed by '/'" in capsys.readouterr().err
