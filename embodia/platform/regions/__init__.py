"""Regions: a catalog of where jobs may run, placement policies, cost-optimal placement, failover, fleet simulator.

Modules: `catalog` (regions, jurisdictions, pools, prices), `policy` (residency, export rules, job needs, tenant
caps), `placement` (legality and cost matrices; exact MILP and regret-greedy heuristic; explanations),
`scheduler` (the workspace's queued jobs placed, failover, up/down state), `fleet` (trace simulator).
"""
