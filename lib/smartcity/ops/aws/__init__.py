"""``smartcity aws provision | teardown``: the AWS resources of the aws profile."""
