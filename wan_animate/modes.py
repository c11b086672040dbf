"""The two ways Wan2.2-Animate uses a driving video, named once for preprocessing, the engine, the CLIs and the nodes.

animate: the reference character performs the driving motion. replace: the reference character replaces the person
in the driving video (needs the background with the person removed and the character mask).
"""

MODES = ("animate", "replace")
