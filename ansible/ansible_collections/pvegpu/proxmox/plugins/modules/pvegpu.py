#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pvegpu contributors
# SPDX-License-Identifier: MIT OR Apache-2.0

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pvegpu
short_description: Converge or verify a Proxmox VE node for NVIDIA GPU passthrough with pvegpu
version_added: "0.1.0"
description:
  - Runs the C(pvegpu) command line tool for one node of a pvegpu inventory (TOML) and reports
    its JSON output (format version 1) the Ansible way.
  - With O(state=converged) a normal run is C(pvegpu apply --yes --json), which converges the
    host phase (IOMMU, vfio, initramfs, reboot), the VM phase (Proxmox API) and the guest phase,
    as far as the inventory configures them. C(changed) is true when pvegpu changed something.
  - In check mode (C(--check)) the module runs C(pvegpu plan --json) instead and changes
    nothing; C(changed) is true when the plan has changes to make (state C(ready)) or a phase
    waits for an earlier one (state C(waiting)). A plan that is C(refused), C(incomplete) (a
    phase it could not reach was left out) or C(failed) fails the task.
  - In diff mode (C(--diff)) every file the plan writes or removes on the node is shown as a
    diff whose headers are the file's path. Changes that are not files (Proxmox API calls,
    commands, the reboot) are listed in RV(changes). A normal run takes the diffs from the plan
    that apply's JSON carries, the one apply showed before its changes.
  - With O(state=verified) the module runs C(pvegpu verify --json), which only reads; it fails
    when a check does not pass, naming each such check with pvegpu's fix.
  - pvegpu reaches the node itself (SSH and the Proxmox API), so the task usually runs where
    pvegpu and its inventory are, for example with C(delegate_to) a controller host, once per
    Proxmox node of the play. Ansible's forks and C(serial) then decide how many nodes
    converge at once.
  - A failure (a refusal, a failed step, a verification that did not pass, a pvegpu error)
    carries pvegpu's own message and its C(hint) lines in C(msg) and RV(hint), and pvegpu's
    JSON as far as it was printed in RV(pvegpu). The refusals of an C(apply) come from the
    plan its JSON carries (or, where it carries none, from a read-only C(pvegpu plan)).
  - O(node) may also be a pattern pvegpu's C(--limit) takes (V(pve-*), a group); the usual
    playbook has one task per Proxmox node instead, so that Ansible schedules them.
author:
  - pvegpu contributors (!UNKNOWN)
requirements:
  - The pvegpu binary (0.1.0 or later, JSON format version 1) on the host that runs the task.
options:
  node:
    description:
      - The node's name in the pvegpu inventory (given to pvegpu as C(--limit)), usually
        C({{ inventory_hostname }}) when the Ansible inventory names the Proxmox nodes alike.
    type: str
    required: true
  state:
    description:
      - V(converged) applies what the node needs (plans only, in check mode).
      - V(verified) checks every layer read-only and fails unless all pass; it never changes
        anything, in check mode or not.
    type: str
    choices: [converged, verified]
    default: converged
  inventory:
    description:
      - The pvegpu inventory (TOML) on the host that runs the task.
      - Left out, pvegpu reads E(PVEGPU_INVENTORY), else C(pvegpu.toml) in the task's working
        folder.
    type: path
  facts:
    description:
      - A host facts file saved by C(pvegpu discover --save), read instead of probing the
        node over SSH. The VM phase still asks the Proxmox API; C(apply) with facts runs the
        VM phase only.
    type: path
  phase:
    description:
      - The last phase to plan (C(pvegpu plan --phase)), for example V(host) with O(facts) to
        plan offline what a facts file can tell.
      - Check mode only, since C(apply) converges every phase the node has; a normal run with
        O(state=converged) or any run with O(state=verified) fails when it is set, rather than
        apply more than the check showed.
    type: str
    choices: [host, vm, guest]
  stop_guests:
    description:
      - Let C(apply) shut down running guests when the host must reboot (C(--stop-guests)).
        Without it, a reboot with running guests is refused.
    type: bool
    default: false
  reboot_timeout:
    description:
      - Seconds C(apply) waits for the node to come back from a reboot (C(--reboot-timeout));
        pvegpu's default when left out.
    type: int
  binary:
    description:
      - The pvegpu executable; a bare name is looked up on E(PATH), a path is used as is.
    type: str
    default: pvegpu
  token_secret:
    description:
      - The Proxmox API token's secret, handed to pvegpu as E(PVEGPU_TOKEN_SECRET) (never on
        its command line). Left out, pvegpu reads the environment or the file the inventory
        names.
    type: str
  api_password:
    description:
      - The Proxmox API password, for an inventory that logs in with a user and password;
        handed to pvegpu as E(PVEGPU_PASSWORD).
    type: str
attributes:
  check_mode:
    description: Check mode runs C(pvegpu plan), which changes nothing.
    support: full
  diff_mode:
    description: Shows each file the plan writes or removes, with its path as the header.
    support: full
notes:
  - The module reads pvegpu's JSON format version 1 and fails on any other, naming both.
  - C(apply) may reboot the node and wait for it; give long runs C(async) and C(poll), or a
    generous SSH timeout.
"""

EXAMPLES = r"""
- name: Converge the GPU nodes, two at a time
  hosts: gpu_nodes
  serial: 2
  gather_facts: false
  tasks:
    - name: Passthrough, VM and guest as the pvegpu inventory says
      pvegpu.proxmox.pvegpu:
        node: "{{ inventory_hostname }}"
        inventory: /etc/pvegpu/pvegpu.toml
        token_secret: "{{ vault_pvegpu_token_secret }}"
        reboot_timeout: 900
      delegate_to: localhost

- name: What would change, with file diffs (ansible-playbook --check --diff)
  pvegpu.proxmox.pvegpu:
    node: osm45
    inventory: /etc/pvegpu/pvegpu.toml
  delegate_to: localhost
  check_mode: true

- name: Plan the host phase offline from saved facts
  pvegpu.proxmox.pvegpu:
    node: osm45
    inventory: /etc/pvegpu/pvegpu.toml
    facts: /var/lib/pvegpu/osm45.facts
    phase: host
  delegate_to: localhost
  check_mode: true

- name: Fail the play unless every layer verifies
  pvegpu.proxmox.pvegpu:
    node: "{{ inventory_hostname }}"
    inventory: /etc/pvegpu/pvegpu.toml
    state: verified
  delegate_to: localhost
"""

RETURN = r"""
command:
  description: The pvegpu subcommand that ran last (C(plan), C(apply) or C(verify)).
  returned: always
  type: str
  sample: apply
cmd:
  description: Its command line. Secrets are passed in the environment, never here.
  returned: when pvegpu ran
  type: list
  elements: str
  sample: [pvegpu, -i, /etc/pvegpu/pvegpu.toml, --json, apply, --limit, osm45, --yes]
rc:
  description: pvegpu's exit status.
  returned: when pvegpu ran
  type: int
  sample: 0
status:
  description:
    - The node's state as pvegpu reported it. For a plan one of C(ready), C(nothing_to_do),
      C(refused), C(waiting), C(incomplete) (a phase was left out), C(failed) (not planned);
      for apply one of C(changed), C(unchanged), C(refused), C(failed), C(skipped); for
      verify C(passed) or C(failed).
    - With several nodes (a O(node) pattern), a dictionary of node name to state.
  returned: when pvegpu printed its JSON
  type: raw
  sample: changed
changes:
  description: Each change of the plan (check mode, or a normal run with C(--diff)).
  returned: when a plan ran
  type: list
  elements: dict
  contains:
    node:
      description: The node.
      type: str
    phase:
      description: C(host), C(vm) or C(guest).
      type: str
    step:
      description: The playbook step of pvegpu that makes the change.
      type: str
    summary:
      description: What the change does.
      type: str
  sample: [{node: osm45, phase: host, step: vfio-binding, summary: bind exactly the target devices to vfio-pci}]
reboots:
  description: How many times apply rebooted the node.
  returned: when apply ran and printed its JSON
  type: int
  sample: 1
hint:
  description: pvegpu's hints on a failure, one per line (from its C(hint:) lines, a refusal or an error).
  returned: on failure, when pvegpu gave one
  type: str
  sample: "to plan only what these facts can tell, ask for it: `--phase host`"
pvegpu:
  description: pvegpu's JSON output as printed (C(format_version), C(nodes), and C(recap) for apply or C(passed) for verify).
  returned: when pvegpu printed JSON
  type: dict
stdout:
  description: pvegpu's standard output, when it was not JSON.
  returned: when pvegpu printed something that is not JSON
  type: str
stderr:
  description: pvegpu's standard error (progress lines and errors; pvegpu never prints secrets).
  returned: when pvegpu ran
  type: str
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule

FORMAT_VERSION = 1
PLAN_CHANGED = ("ready", "waiting")
PLAN_STATES = ("ready", "nothing_to_do", "refused", "waiting", "incomplete", "failed")
APPLY_OK = ("changed", "unchanged")
PASSING_CHECKS = ("pass", "warn")


def subcommand(state, check_mode):
    """The pvegpu subcommand a run means."""
    if state == "verified":
        return "verify"
    return "plan" if check_mode else "apply"


def command_line(binary, params, command):
    """pvegpu's arguments for `command`; never a secret."""
    args = [binary]
    if params["inventory"]:
        args += ["-i", params["inventory"]]
    args += ["--json", command, "--limit", params["node"]]
    if params["facts"]:
        args += ["--facts", params["facts"]]
    if command == "plan" and params["phase"]:
        args += ["--phase", params["phase"]]
    if command == "apply":
        args.append("--yes")
        if params["stop_guests"]:
            args.append("--stop-guests")
        if params["reboot_timeout"] is not None:
            args += ["--reboot-timeout", str(params["reboot_timeout"])]
    return args


def environment(params):
    """Secrets for pvegpu, in its environment only."""
    env = {"NO_COLOR": "1"}
    if params["token_secret"] is not None:
        env["PVEGPU_TOKEN_SECRET"] = params["token_secret"]
    if params["api_password"] is not None:
        env["PVEGPU_PASSWORD"] = params["api_password"]
    return env


def find_binary(module, name):
    if os.sep in name:
        if not os.access(name, os.X_OK):
            module.fail_json(msg="pvegpu binary %s is not an executable file" % name)
        return name
    return module.get_bin_path(name, required=True)


def parse_stderr(text):
    """pvegpu's last `error:` block, its `Caused by:` lines and every `hint:` line."""
    message, causes, hints = None, [], []
    current = None
    for line in text.splitlines():
        if line.startswith("error: "):
            message, causes = line[len("error: "):], []
            current = "error"
        elif line.startswith("  Caused by: ") and current in ("error", "cause"):
            causes.append(line[len("  Caused by: "):])
            current = "cause"
        elif line.startswith("hint: "):
            hints.append(line[len("hint: "):])
            current = "hint"
        elif line.startswith(" ") and current == "hint":
            hints[-1] += "\n" + line.strip()
        else:
            current = None
    return message, causes, hints


def parse_json(stdout):
    """pvegpu's JSON document, or None when stdout holds none."""
    try:
        return json.loads(stdout)
    except ValueError:
        return None


def unique(items):
    out = []
    for item in items:
        if item and item not in out:
            out.append(item)
    return out


class Run(object):
    """One pvegpu run: what it printed and what it means."""

    def __init__(self, command, cmd, rc, stdout, stderr):
        self.command = command
        self.cmd = cmd
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.doc = parse_json(stdout)
        self.error, self.causes, self.hints = parse_stderr(stderr)

    def readable(self):
        """Whether the output is a JSON object of the format this module reads."""
        return isinstance(self.doc, dict) and self.doc.get("format_version") == FORMAT_VERSION

    def result(self):
        res = dict(command=self.command, cmd=self.cmd, rc=self.rc, stderr=self.stderr)
        if self.readable():
            res["pvegpu"] = self.doc
        elif self.stdout.strip():
            res["stdout"] = self.stdout
        return res

    def format_problem(self):
        """Why this module cannot read the JSON printed, or None."""
        if self.doc is None or self.readable():
            return None
        version = self.doc.get("format_version") if isinstance(self.doc, dict) else None
        return (
            "pvegpu printed JSON format_version %s; this module reads format_version %d: "
            "install a pvegpu and a pvegpu.proxmox collection of the same release"
            % ("(none)" if version is None else version, FORMAT_VERSION)
        )

    def nodes(self):
        """(name, node object) for each node of the output."""
        nodes = (self.doc.get("nodes") or []) if self.readable() else []
        if isinstance(nodes, dict):
            return sorted(nodes.items())
        return [(n.get("node", "?"), n) for n in nodes if isinstance(n, dict)]

    def error_text(self):
        """pvegpu's own error, with its causes."""
        if not self.error:
            return None
        return "; ".join([self.error] + ["caused by: %s" % c for c in self.causes])


def phases(node):
    """(phase, plan) for each phase of a node's plan that was planned."""
    out = [("host", node)]
    for name in ("vm", "guest"):
        if isinstance(node.get(name), dict):
            out.append((name, node[name]))
    return out


def describe(change):
    """A change's one-line description, whatever its phase's shape."""
    summary = change.get("summary")
    if summary:
        return summary
    action = change.get("action") if isinstance(change.get("action"), dict) else change
    kind = action.get("kind", "change")
    what = [str(action[k]) for k in ("id", "vmid", "disk", "path", "command") if k in action]
    return " ".join([kind.replace("-", " ")] + what)


def plan_changes(name, node):
    """Each change of a node's plan, every phase."""
    out = []
    for phase, plan in phases(node):
        for change in plan.get("changes") or plan.get("steps") or []:
            if isinstance(change, dict):
                out.append(
                    dict(
                        node=name,
                        phase=phase,
                        step=change.get("step") or change.get("kind") or "",
                        summary=describe(change),
                    )
                )
    return out


def file_diffs(name, node, several):
    """An Ansible diff for each file the plan writes or removes."""
    out = []
    for dummy, plan in phases(node):
        for change in plan.get("changes") or []:
            action = change.get("action") if isinstance(change, dict) else None
            if not isinstance(action, dict):
                continue
            if action.get("kind") == "write-file":
                after = action.get("content") or ""
            elif action.get("kind") == "remove-file":
                after = ""
            else:
                continue
            header = action.get("path", "?")
            if several:
                header = "%s:%s" % (name, header)
            out.append(
                dict(
                    before_header=header,
                    after_header=header,
                    before=action.get("before") or "",
                    after=after,
                )
            )
    return out


def refusals(node):
    """(reason, hint) of every refusal in a node's plan."""
    out = []
    for phase, plan in phases(node):
        for r in plan.get("refusals") or []:
            if isinstance(r, dict):
                out.append(("%s: %s" % (phase, r.get("reason", "refused")), r.get("hint")))
    return out


def one_or_many(statuses):
    if len(statuses) == 1:
        return list(statuses.values())[0]
    return statuses


def failure(module, run, summary, details=None, hints=None, **extra):
    """fail_json with pvegpu's message and hints, and what it printed."""
    hints = unique(list(hints or []) + run.hints)
    parts = unique([run.error_text()] + list(details or []))
    msg = summary
    if parts:
        msg += ": " + "; ".join(parts)
    if hints:
        msg += "; hint: " + "; hint: ".join(hints)
    res = run.result()
    res.update(extra)
    if hints:
        res["hint"] = "\n".join(hints)
    module.fail_json(msg=msg, **res)


def error_parts(node):
    """(message, causes, hints) of a node's `error` object; (None, [], []) without one."""
    err = node.get("error")
    if not isinstance(err, dict):
        return None, [], []
    hints = err.get("hints")
    if not isinstance(hints, list):
        hints = [err.get("hint")]
    return err.get("message"), list(err.get("causes") or []), hints


def node_error(name, node, known_error):
    """A node's error as details and hints; its message left out where stderr said it."""
    message, causes, hints = error_parts(node)
    details = []
    if message and message != known_error:
        details.append("%s: %s" % (name, "; ".join([message] + ["caused by: %s" % c for c in causes])))
    return details, hints


def left_out(name, node):
    """The phases an offline plan could not reach, with why."""
    phases_json = node.get("phases") if isinstance(node.get("phases"), dict) else {}
    return [
        "%s: the %s phase was left out: %s" % (name, lo.get("phase"), lo.get("error"))
        for lo in phases_json.get("left_out") or []
        if isinstance(lo, dict)
    ]


def read_plan(module, run):
    """(changed, statuses, changes, diffs) of a plan; fails on a refusal or an error."""
    nodes = run.nodes()
    statuses = dict((name, node.get("state")) for name, node in nodes)
    changes = []
    for name, node in nodes:
        changes += plan_changes(name, node)
    fields = dict(status=one_or_many(statuses) if nodes else None, changes=changes)
    refused = [name for name, node in nodes if node.get("state") == "refused"]
    details, hints = [], []
    for name, node in nodes:
        for reason, hint in refusals(node):
            details.append("%s %s" % (name, reason))
            hints.append(hint)
        found = node_error(name, node, run.error)
        details += found[0] + left_out(name, node)
        hints += found[1]
    if refused:
        failure(module, run, "pvegpu refuses to change %s" % ", ".join(refused), details, hints, **fields)
    unknown = [s for s in statuses.values() if s not in PLAN_STATES]
    if unknown:
        failure(module, run, "pvegpu plan reported state %s, which this module does not know" % unknown[0], **fields)
    not_planned = [name for name, state in statuses.items() if state in ("failed", "incomplete")]
    if run.rc not in (0, 2) or not nodes or not_planned:
        why = "pvegpu could not plan %s" % ", ".join(not_planned) if not_planned else "pvegpu plan failed"
        failure(module, run, why, details, hints, **fields)
    several = len(nodes) > 1
    diffs = []
    for name, node in nodes:
        diffs += file_diffs(name, node, several)
    changed = any(s in PLAN_CHANGED for s in statuses.values())
    return changed, statuses, changes, diffs


def last_lines(text, count=3):
    return " / ".join((text or "").strip().splitlines()[-count:])


def node_problems(name, node, known_error):
    """What went wrong on one node of an apply: (details, hints)."""
    details, hints = node_error(name, node, known_error)
    for step in node.get("steps") or []:
        if isinstance(step, dict) and step.get("ok") is False:
            output = last_lines(step.get("output"))
            details.append("%s step %s failed%s" % (name, step.get("step"), ": " + output if output else ""))
    plan = node.get("plan") if isinstance(node.get("plan"), dict) else {}
    for reason, hint in refusals(plan):
        details.append("%s %s" % (name, reason))
        hints.append(hint)
    if not details and not known_error:
        details.append("%s %s" % (name, node.get("status")))
    return details, hints


def refused_without_reasons(run):
    """Whether apply refused a node without its plan's refusals in its JSON."""
    return any(
        node.get("status") == "refused" and not refusals(node.get("plan") if isinstance(node.get("plan"), dict) else {})
        for dummy, node in run.nodes()
    )


def read_apply(module, run, extra, plan=None):
    """(changed, statuses, reboots) of an apply; fails unless every node converged. `plan`,
    when given, is a plan of the same nodes whose refusals say why apply refused."""
    nodes = run.nodes()
    statuses = dict((name, node.get("status")) for name, node in nodes)
    changed = any(s == "changed" for s in statuses.values())
    reboots = sum(int(node.get("reboots") or 0) for dummy, node in nodes)
    bad = [(name, node) for name, node in nodes if node.get("status") not in APPLY_OK or node.get("ok") is False]
    if run.rc == 0 and nodes and not bad:
        return changed, statuses, reboots
    details, hints = [], []
    for name, node in bad:
        found = node_problems(name, node, run.error)
        details += found[0]
        hints += found[1]
    for name, node in plan.nodes() if plan else []:
        for reason, hint in refusals(node):
            details.append("%s %s" % (name, reason))
            hints.append(hint)
    extra.update(status=one_or_many(statuses) if nodes else None, reboots=reboots)
    failure(module, run, "pvegpu apply failed", details=details, hints=hints, changed=changed, **extra)


def read_verify(module, run):
    """The node's verdict; fails unless verify passed."""
    nodes = run.nodes()
    passed = bool(run.doc and run.doc.get("passed") is True)
    statuses = {}
    details, hints = [], []
    for name, report in nodes:
        failing = [c for c in report.get("checks") or [] if c.get("status") not in PASSING_CHECKS]
        statuses[name] = "failed" if failing else "passed"
        for c in failing:
            details.append("%s %s/%s %s: %s" % (name, c.get("layer"), c.get("name"), c.get("status"), c.get("saw")))
            hints.append(c.get("fix"))
    if run.rc != 0 or not passed or not nodes:
        failure(module, run, "pvegpu verify did not pass", details=details, hints=hints, status=one_or_many(statuses) if nodes else None)
    return one_or_many(statuses)


def run_quietly(module, binary, command, env):
    """Run pvegpu; what it printed, whatever it was."""
    cmd = command_line(binary, module.params, command)
    rc, stdout, stderr = module.run_command(cmd, environ_update=env)
    return Run(command, cmd, rc, stdout, stderr)


def run_pvegpu(module, binary, command, env):
    """Run pvegpu; fails unless it printed JSON this module reads."""
    run = run_quietly(module, binary, command, env)
    problem = run.format_problem()
    if problem:
        module.fail_json(msg=problem, **run.result())
    if run.doc is None:
        failure(module, run, "pvegpu %s printed no JSON (exit status %d)" % (command, run.rc))
    return run


def verify(module, binary, env):
    run = run_pvegpu(module, binary, "verify", env)
    status = read_verify(module, run)
    module.exit_json(changed=False, status=status, **run.result())


def planned(module, binary, env):
    """A plan run and what it says: (run, changed, result fields)."""
    run = run_pvegpu(module, binary, "plan", env)
    changed, statuses, changes, diffs = read_plan(module, run)
    fields = dict(status=one_or_many(statuses), changes=changes)
    if module._diff:
        fields["diff"] = diffs
    return run, changed, fields


def check(module, binary, env):
    run, changed, fields = planned(module, binary, env)
    module.exit_json(changed=changed, **dict(run.result(), **fields))


def converge(module, binary, env):
    """apply; its JSON carries the plan each node showed before its changes, which gives
    --diff its diffs without planning (and reading the node) a second time."""
    run = run_pvegpu(module, binary, "apply", env)
    plan = None
    if refused_without_reasons(run):
        # a read-only plan names each refusal and its hint
        plan = run_quietly(module, binary, "plan", env)
    extra = {}
    if module._diff:
        shown = [(name, node["plan"]) for name, node in run.nodes() if isinstance(node.get("plan"), dict)]
        changes, diffs = [], []
        for name, node_plan in shown:
            changes += plan_changes(name, node_plan)
            diffs += file_diffs(name, node_plan, len(shown) > 1)
        extra = dict(changes=changes, diff=diffs)
    changed, statuses, reboots = read_apply(module, run, extra, plan)
    if not changed:
        extra.pop("diff", None)
    module.exit_json(changed=changed, status=one_or_many(statuses), reboots=reboots, **dict(run.result(), **extra))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            node=dict(type="str", required=True),
            state=dict(type="str", default="converged", choices=["converged", "verified"]),
            inventory=dict(type="path"),
            facts=dict(type="path"),
            phase=dict(type="str", choices=["host", "vm", "guest"]),
            stop_guests=dict(type="bool", default=False),
            reboot_timeout=dict(type="int"),
            binary=dict(type="str", default="pvegpu"),
            token_secret=dict(type="str", no_log=True),
            api_password=dict(type="str", no_log=True),
        ),
        supports_check_mode=True,
    )
    params = module.params
    command = subcommand(params["state"], module.check_mode)
    if params["phase"] and command != "plan":
        module.fail_json(
            msg="phase is for check mode only: pvegpu %s runs every phase the node has, "
            "more than a check with phase=%s would show" % (command, params["phase"])
        )
    binary = find_binary(module, params["binary"])
    env = environment(params)
    {"verify": verify, "plan": check, "apply": converge}[command](module, binary, env)


if __name__ == "__main__":
    main()
