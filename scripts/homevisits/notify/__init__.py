"""The scheduled job: email forms before the deadline, chase missing ones, escalate overdue returns.

One flow, each step its own module: ``options`` (the job's settings), ``history`` (what the ledger and
the sheet say was sent), ``messages`` (compose each kind), ``steps`` and ``plan`` (pure: what a run does
now and why, as a :class:`~homevisits.notify.plan.RunPlan`), ``deliver`` (transports, ledger, write-back:
the only I/O), ``texts`` (check-in texts, duress alerts, safe notices) and ``run`` (lock, read, plan,
deliver, heartbeat). ``--dry-run`` prints the very plan a run would execute.

Deadlines are instants: elapsed hours, in UTC. A row without a Visit ID gets one in this run's write
and is handled from the next run on (cron runs every 5 minutes). stdout and logs name visit IDs only.
"""

from .plan import JOBS, RunPlan, plan

# The run itself is ``homevisits.notify.run.run`` (not re-exported: the name would hide its module).
__all__ = ["JOBS", "RunPlan", "plan"]
