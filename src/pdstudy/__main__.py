from pdstudy.cli import main

raise SystemExit(main())
