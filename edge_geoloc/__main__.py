from edge_geoloc.cli import main

raise SystemExit(main())
