"""Differential fuzzing of the x86 engine: random programs in both tiers (`pyemu fuzz`).

`gen` draws a program (random bytes and mutated instruction encodings) and the machine state it
starts from in one of five modes; `runner` runs it in tier 0 and tier 1 and compares the end
states; `campaign` runs batches in worker processes (or Ray tasks), isolates crashes and hangs in
child processes, minimizes findings and writes reproducers.
"""
