"""Pure analysis of a snapshot: no threads, no patching, no I/O.

- `deadlock`: the reduction of the wait-for graph (who can still make
  progress), cycles, the Coffman conditions, findings.
- `graph`: the networkx view of a snapshot (cycles, DOT's graph); networkx is
  imported in the background the first time an analysis asks for it.
"""
