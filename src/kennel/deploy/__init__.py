"""Deploy: environments, the staging application test (certification), release policy
(continuous delivery or deployment), release and rollback."""
