"""`rebase check`: probe the policy and reward servers before a long run.

`service.run_checks` runs the probes (`server_kind`, `policy_probes`, `reward_probes`, and for a
full check `rollouts`) over the run's own clients and returns a `findings.CheckReport`.
"""
