"""The web dashboard (``kennel ui``): server-rendered pages over the same library calls as the
CLI. ``app.create_app`` assembles it; ``sessions`` signs people in with their role tokens;
``views`` reads what each page shows; ``actions`` performs what its buttons do."""
