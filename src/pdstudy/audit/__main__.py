"""``python -m pdstudy.audit [--out DIR]``: write paper_audit.csv and paper_audit.md."""

from pdstudy.audit.summary import main

if __name__ == "__main__":
    raise SystemExit(main())
