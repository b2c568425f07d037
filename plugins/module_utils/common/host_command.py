# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a read-only host command (nvidia-smi, nvidia-ctk...) with a timeout, from code that has no AnsibleModule.

The fact gatherers call this from plain functions that are unit-tested without Ansible, so AnsibleModule.run_command
is not at hand; every call has a timeout because a hung GPU driver can make nvidia-smi hang.
"""

from __future__ import annotations

import subprocess


def run(argv, timeout):
    """(CompletedProcess, None), or (None, why it could not run): never raises for a missing or hung command."""
    try:
        # pylint: disable-next=ansible-bad-function
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False), None
    except subprocess.TimeoutExpired:
        return None, "timed out after %s s" % timeout
    except OSError as exc:
        return None, str(exc)
