from tests.providers.conformance import ProviderConformance


class TestGcpConformance(ProviderConformance):
    provider_name = "gcp"
