"""The committed leaderboards: a thin wrapper of ``benchsuite leaderboard`` (benchsuite/leaderboard.py), kept so
that the command of older notes still works.

    python scripts/leaderboard.py tune --tier core     # = benchsuite leaderboard tune --tier core
    python scripts/leaderboard.py run --tier core      # = benchsuite leaderboard run --tier core
"""

import sys

from benchsuite.cli import main

if __name__ == "__main__":
    sys.exit(main(["leaderboard", *sys.argv[1:]]))
