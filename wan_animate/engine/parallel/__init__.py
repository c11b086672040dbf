"""One job across several GPUs: sequence parallel for the DiT (sequence.py), the 14B blocks' attention under it
(attention.py, imported by the jobs that need it), optionally sharded DiT weights (weights.py) and joining
torchrun's process group (launch.py).

The VAE and the text/image encoders are replicated: every rank runs them on the same inputs. Their outputs are
needed on every rank anyway (each rank embeds the full latent input before taking its slice), they are a small part
of a job next to the DiT's steps, and replicating them costs no communication; rank 0's conditioning is broadcast
to the others (`SequenceParallel.same_everywhere`) so that kernel-level nondeterminism cannot make the ranks'
inputs differ. Every rank ends with the same frames; the caller writes them on rank 0.
"""
from .launch import Rank, join, launched_by_torchrun, leave
from .sequence import MODES, SequenceParallel, Split, WholeSequence, check_mode, frame_runs, split_for
from .weights import shard_blocks, unsharding

__all__ = [
    "MODES",
    "Rank",
    "SequenceParallel",
    "Split",
    "WholeSequence",
    "check_mode",
    "frame_runs",
    "join",
    "launched_by_torchrun",
    "leave",
    "shard_blocks",
    "split_for",
    "unsharding",
]
