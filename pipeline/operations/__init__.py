"""Operations: setup (topics, index templates), local services, Kibana objects, process signals."""
