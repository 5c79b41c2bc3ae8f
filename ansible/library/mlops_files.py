#!/usr/bin/python
# The platform's own module (ansible/library): several small files in one module run.
from __future__ import annotations

DOCUMENTATION = r"""
module: mlops_files
short_description: Write several small text files, or create directories, in one module run
description:
  - For each file, writes O(files[].content) (atomically, through a temporary file in the same
    directory) when the file is missing or its content differs, then sets its owner, group and mode
    where they differ.
  - For each directory (O(files[].state=directory)), creates it and any missing parent (with the same
    owner, group and mode), then sets its owner, group and mode where they differ.
  - One module run for all of them, where M(ansible.builtin.template) or M(ansible.builtin.copy) take
    two per file and M(ansible.builtin.file) one per directory (a no-op `make up` is mostly such
    module runs).
  - Not for secrets (diff mode shows the content; no_log hides nothing per file).
  - Supports check mode and diff mode.
options:
  files:
    description: >-
      The files and directories. A file's directory must exist. O(state), O(mode), O(owner) and
      O(group) given here override the module's own.
    type: list
    elements: dict
    required: true
    suboptions:
      path: {description: Absolute path of the file or directory., type: path, required: true}
      state: {description: What the path is (default O(state))., type: str, choices: [file, directory]}
      content: {description: The whole text of the file (required for a file)., type: str}
      mode: {description: Its mode (default O(mode))., type: raw}
      owner: {description: Its owner (default O(owner))., type: str}
      group: {description: Its group (default O(group))., type: str}
  state: {description: What each path is unless it says., type: str, choices: [file, directory], default: file}
  mode: {description: The mode of each path unless it says, like C("0644"); one of the two is required., type: raw}
  owner: {description: The owner of each path unless it says (default the module's user)., type: str}
  group: {description: The group of each path unless it says (default the owner's primary group)., type: str}
author: mlops-xeon
"""

RETURN = r"""
changed_paths:
  description: >-
    The files this run wrote and the directories it created, or changed the owner, group or mode of
    (in check mode, would have).
  returned: always
  type: list
  elements: str
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes


def _write(module: AnsibleModule, path: str, data: bytes) -> None:
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        module.atomic_move(tmp, path, unsafe_writes=False)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _directory(module: AnsibleModule, path: str, attributes: dict) -> bool:
    """Create ``path`` and its missing parents (each with ``attributes``); True if anything changed."""
    if os.path.exists(path) and not os.path.isdir(path):
        module.fail_json(msg=f"mlops_files: {path} exists and is not a directory")
    missing = []
    parent = path
    while not os.path.exists(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    if missing and module.check_mode:
        return True
    changed = False
    for created in reversed(missing):
        os.mkdir(created)
        module.set_fs_attributes_if_different({**attributes, "path": created}, True, expand=False)
        changed = True
    return module.set_fs_attributes_if_different(attributes, changed, expand=False)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "files": {"type": "list", "elements": "dict", "required": True, "options": {
                "path": {"type": "path", "required": True},
                "state": {"type": "str", "choices": ["file", "directory"]},
                "content": {"type": "str"},
                "mode": {"type": "raw"},
                "owner": {"type": "str"},
                "group": {"type": "str"},
            }},
            "state": {"type": "str", "choices": ["file", "directory"], "default": "file"},
            "mode": {"type": "raw"},
            "owner": {"type": "str"},
            "group": {"type": "str"},
        },
        supports_check_mode=True,
    )
    changed_paths, diffs = [], []
    for entry in module.params["files"]:
        spec = {**entry, **{key: module.params[key] for key in ("state", "mode", "owner", "group")
                            if entry[key] is None}}
        path = spec["path"]
        if not os.path.isabs(path):
            module.fail_json(msg=f"mlops_files: {path} is not an absolute path")
        if spec["mode"] is None:
            module.fail_json(msg=f"mlops_files: no mode for {path}")
        # A directory's attributes go to where a link to it points (as ansible.builtin.file's); a file
        # replaces a link.
        attributes = module.load_file_common_arguments({**spec, "follow": spec["state"] == "directory"})
        if spec["state"] == "directory":
            if _directory(module, path, attributes):
                changed_paths.append(path)
            continue
        if spec["content"] is None:
            module.fail_json(msg=f"mlops_files: {path} is a file without content")
        if not os.path.isdir(os.path.dirname(path)):
            module.fail_json(msg=f"mlops_files: the directory of {path} does not exist")
        data = to_bytes(spec["content"], errors="surrogate_or_strict")
        before = None
        if os.path.exists(path):
            with open(path, "rb") as handle:
                before = handle.read()
        changed = before != data
        if changed:
            if module._diff:
                diffs.append({"before_header": path, "after_header": path,
                              "before": (before or b"").decode("utf-8", "replace"),
                              "after": spec["content"]})
            if not module.check_mode:
                _write(module, path, data)
        if os.path.exists(path):
            changed = module.set_fs_attributes_if_different(attributes, changed, expand=False)
        if changed:
            changed_paths.append(path)
    result = {"changed": bool(changed_paths), "changed_paths": changed_paths}
    if diffs:
        result["diff"] = diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
