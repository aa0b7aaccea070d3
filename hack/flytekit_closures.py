"""Turn `pyflyte serialize workflows` output into one core.WorkflowClosure per workflow (run by the flytekit venv).

pyflyte writes each task (admin.TaskSpec) and each workflow (admin.WorkflowSpec) as its own file, with identifiers
lacking project, domain and version (flyteadmin fills those in at registration). This fills them in the same way and
writes `<workflow name>.closure.pb`: the workflow template with every task template it references, which is what
propeller's compiler (`kubectl-flyte create`) reads. Usage: python hack/flytekit_closures.py DIR PROJECT DOMAIN VERSION
"""

from __future__ import annotations

import sys
from pathlib import Path

from flyteidl.admin import task_pb2, workflow_pb2
from flyteidl.core import identifier_pb2, workflow_closure_pb2
from google.protobuf.message import Message


def register(message: Message, project: str, domain: str, version: str) -> None:
    """Fill project, domain and version of every Identifier inside `message`, as flyteadmin's registration does."""
    if isinstance(message, identifier_pb2.Identifier):
        message.project = message.project or project
        message.domain = message.domain or domain
        message.version = message.version or version
        return
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            values = [v for v in value.values() if isinstance(v, Message)]
        else:
            values = [value] if isinstance(value, Message) else list(value)
        for item in values:
            register(item, project, domain, version)


def main(directory: Path, project: str, domain: str, version: str) -> None:
    tasks, workflows = {}, []
    for path in sorted(directory.glob("*.pb")):
        data = path.read_bytes()
        if path.stem.endswith("_1"):
            spec = task_pb2.TaskSpec.FromString(data)
            register(spec, project, domain, version)
            tasks[spec.template.id.name] = spec.template
        elif path.stem.endswith("_2"):
            wf = workflow_pb2.WorkflowSpec.FromString(data)
            register(wf, project, domain, version)
            workflows.append(wf)
    for wf in workflows:
        closure = workflow_closure_pb2.WorkflowClosure(workflow=wf.template, tasks=tasks.values())
        (directory / f"{wf.template.id.name}.closure.pb").write_bytes(closure.SerializeToString())
        print(wf.template.id.name)


if __name__ == "__main__":
    main(Path(sys.argv[1]), *sys.argv[2:5])
