"""Tools on whole sweeps: compare two sweeps point by point (`sweep_compare`), and simulate the report's interval
coverage on copies of a sweep's design (`coverage`). Their commands are in `pipeline.scaling.cli`.

May import every layer below: `records`, `fits`, `analyses`, `report`.
"""
