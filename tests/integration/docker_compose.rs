use yaml_rust2::{Yaml, YamlLoader};

use crate::support::repo;

#[test]
fn docker_compose_starts_a_source_and_a_target_with_logical_decoding() {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    let docs = YamlLoader::load_from_str(&text).expect("docker-compose.yml parses");
    let services = &docs[0]["services"];
    for name in ["source", "target"] {
        let service = &services[name];
        assert!(
            service["image"]
                .as_str()
                .is_some_and(|i| i.starts_with("postgres:")),
            "{name}: image"
        );
        let command: Vec<&str> = match &service["command"] {
            Yaml::Array(items) => items.iter().filter_map(Yaml::as_str).collect(),
            other => panic!("{name}: command is {other:?}"),
        };
        assert!(
            command.windows(2).any(|w| w == ["-c", "wal_level=logical"]),
            "{name}: {command:?}"
        );
        assert!(
            command
                .iter()
                .any(|c| c.starts_with("max_replication_slots=")),
            "{name}"
        );
        assert!(
            service["ports"].as_vec().is_some_and(|p| !p.is_empty()),
            "{name}: ports"
        );
    }
}
