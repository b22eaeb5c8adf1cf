"""`python -m streamguard ...` (and `torchrun -m streamguard ...`)."""

from streamguard.cli import main

if __name__ == "__main__":
    main()
