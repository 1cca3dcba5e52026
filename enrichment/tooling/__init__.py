"""Operations tooling around the product: demo, fault drill, benchmarks, the fake Anthropic
server, evaluation, training and data generation. The product never imports this package."""
