from tests.providers.conformance import ProviderConformance


class TestAwsConformance(ProviderConformance):
    provider_name = "aws"
