from experiments.speed.command import main

raise SystemExit(main())
