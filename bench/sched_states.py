"""Per-thread scheduler states from `perf script` text of sched_switch and
sched_wakeup events (see bench/sched.sh, which records and labels them).

Prints, for the busiest threads, the share of the window each spent running,
runnable (woken or preempted but waiting for a CPU) and asleep; then how much
of the window a CPU sat idle while a thread waited runnable on another CPU,
which threads waited, and what the busy CPU was running meanwhile.

Usage: python3 bench/sched_states.py PERF_SCRIPT_TEXT [LABELS]
LABELS: lines "TID LABEL" (e.g. "4242 hub:tokio-rt-worker"); threads not
listed are shown by their command name.
"""

import collections
import re
import sys

SWITCH = re.compile(
    r"\[(\d+)\]\s+([\d.]+):\s+sched:sched_switch:\s+prev_comm=(.*?) prev_pid=(\d+) "
    r".*?prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+)"
)
WAKEUP = re.compile(
    r"\[(\d+)\]\s+([\d.]+):\s+sched:sched_wakeup:\s+comm=(.*?) pid=(\d+) .*target_cpu=(\d+)"
)
IDLE = "0"


def read_events(path):
    events, names = [], {}
    with open(path) as text:
        for line in text:
            switch = SWITCH.search(line)
            if switch:
                cpu, time, prev_comm, prev, state, next_comm, nxt = switch.groups()
                names[prev], names[nxt] = prev_comm, next_comm
                events.append((float(time), "switch", int(cpu), prev, state, nxt))
                continue
            wakeup = WAKEUP.search(line)
            if wakeup:
                _, time, comm, tid, target = wakeup.groups()
                names[tid] = comm
                events.append((float(time), "wakeup", int(target), tid, None, None))
    events.sort(key=lambda event: event[0])
    return events, names


def main():
    events, names = read_events(sys.argv[1])
    if len(sys.argv) > 2:
        with open(sys.argv[2]) as labels:
            for line in labels:
                tid, _, label = line.strip().partition(" ")
                if label:
                    names[tid] = label
    if not events:
        sys.exit("no sched_switch/sched_wakeup events in the input")
    cpus = sorted({event[2] for event in events if event[1] == "switch"})
    name = lambda tid: f"{names.get(tid, '?')}/{tid}"

    state, since = {}, {}
    shares = collections.defaultdict(collections.Counter)
    running = {}  # cpu -> tid
    waiting = {}  # runnable tid -> the cpu it waits on
    idle_s = collections.Counter()
    idle_while_waiting_s = 0.0
    waiter_blame, runner_blame = collections.Counter(), collections.Counter()
    start = last = events[0][0]

    def enter(tid, new_state, time):
        if tid in state:
            shares[tid][state[tid]] += time - since[tid]
        state[tid], since[tid] = new_state, time

    for time, kind, cpu, tid, prev_state, next_tid in events:
        elapsed = time - last
        last = time
        for idle_cpu in cpus:
            if running.get(idle_cpu) != IDLE:
                continue
            idle_s[idle_cpu] += elapsed
            elsewhere = [t for t, c in waiting.items() if c != idle_cpu]
            if elsewhere:
                idle_while_waiting_s += elapsed
                for waiter in elsewhere:
                    waiter_blame[waiter] += elapsed / len(elsewhere)
                    runner_blame[running.get(waiting[waiter], "?")] += elapsed / len(elsewhere)
        if kind == "switch":
            running[cpu] = next_tid
            waiting.pop(next_tid, None)
            if next_tid != IDLE:
                enter(next_tid, "run", time)
            if tid != IDLE:
                runnable = prev_state.startswith("R")
                enter(tid, "runnable" if runnable else "asleep", time)
                if runnable:
                    waiting[tid] = cpu
        elif state.get(tid) != "run":
            enter(tid, "runnable", time)
            waiting[tid] = cpu

    window_s = last - start
    print(f"window {window_s * 1000:.0f} ms, {len(events)} events, CPUs {cpus}")
    print("\nthread states (share of the time each was seen):")
    busiest = sorted(shares, key=lambda tid: -shares[tid]["run"])[:12]
    for tid in busiest:
        total = sum(shares[tid].values()) or 1
        if shares[tid]["run"] < 0.005 * total:
            continue
        parts = ", ".join(
            f"{kind} {100 * shares[tid][kind] / total:.0f}%" for kind in ("run", "runnable", "asleep")
        )
        print(f"  {name(tid):<32} {parts}")
    print("\nidle per CPU: " + ", ".join(f"cpu{c} {100 * idle_s[c] / window_s:.1f}%" for c in cpus))
    print(
        f"a CPU idle while a thread waited runnable on another: "
        f"{100 * idle_while_waiting_s / window_s:.1f}% of the window"
    )
    print("  waiting then (share of the window):")
    for tid, seconds in waiter_blame.most_common(6):
        print(f"    {100 * seconds / window_s:5.1f}% {name(tid)}")
    print("  running on the waiter's CPU meanwhile:")
    for tid, seconds in runner_blame.most_common(6):
        print(f"    {100 * seconds / window_s:5.1f}% {name(tid)}")


if __name__ == "__main__":
    main()
