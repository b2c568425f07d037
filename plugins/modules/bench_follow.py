#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: bench_follow
short_description: Wait for a background serving benchmark and show its progress
version_added: 0.1.0
author: datacrunch.sglang maintainers (@datacrunch-sglang)
description:
  - Waits for a M(datacrunch.sglang.sglang_bench) O(datacrunch.sglang.sglang_bench#module:mode=serving) run started
    in the background (C(async) with C(poll) 0) with a C(progress_file), and prints one line per round while it runs -
    the concurrency level, and the requests finished at that level from C(bench_serving)'s own progress bar.
  - Returns the module's own result when it ends, and fails with the module's message when it failed.
  - The lines go to the controller's screen as they come (not through the result format); a line is printed only
    when the progress has changed.
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: none
    details: Follow a run; in check mode the benchmark runs in the foreground and there is nothing to follow.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
  idempotent:
    description: When run twice in a row outside check mode, with the same arguments, the second invocation
      indicates no change.
    support: full
    details: Never changes anything.
options:
  jid:
    description: The C(ansible_job_id) of the background run.
    type: str
    required: true
  progress_file:
    description: The C(progress_file) given to the run, on the host.
    type: path
    required: true
  interval:
    description: Seconds between two rounds (at least 1).
    type: int
    default: 10
  timeout:
    description: Seconds to wait at most; 0 waits until the job ends (its own C(async) limit ends it).
    type: int
    default: 0
"""

EXAMPLES = r"""
- name: Benchmark serving in the background
  datacrunch.sglang.sglang_bench:
    mode: serving
    server_dir: /etc/datacrunch-sglang/sglang-server
    progress_file: /run/datacrunch-sglang/bench-serving-progress.json
  async: 7200
  poll: 0
  register: job

- name: Follow it
  datacrunch.sglang.bench_follow:
    jid: "{{ job.ansible_job_id }}"
    progress_file: /run/datacrunch-sglang/bench-serving-progress.json
  register: result
"""

RETURN = r"""
bench_serving:
  description: The result of M(datacrunch.sglang.sglang_bench) O(datacrunch.sglang.sglang_bench#module:mode=serving).
  returned: success
  type: dict
"""
