//! One error type for the stream side: a broker that cannot be reached or refuses, or the lake
//! (through the pipeline's error), each with what was being done. The CLI prints it whole.

use rdkafka::error::KafkaError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag or a topic that cannot be used as given.
    #[error("{0}")]
    Invalid(String),
    /// The broker refused or could not be reached.
    #[error("kafka: {context}: {source}")]
    Kafka {
        context: String,
        #[source]
        source: KafkaError,
    },
    #[error(transparent)]
    Lake(#[from] fraudlake_pipeline::Error),
    /// The scoring code this consumer runs (`--score`) could not start or run.
    #[error(transparent)]
    Serving(#[from] fraudlake_serving::Error),
}

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }

    /// Whether the user can fix it by changing what they asked for (exit code 2).
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::Invalid(_) => true,
            Error::Kafka { .. } => false,
            Error::Lake(e) => e.is_bad_input(),
            Error::Serving(e) => e.is_bad_input(),
        }
    }

    pub fn kafka(context: impl Into<String>, source: KafkaError) -> Self {
        Error::Kafka {
            context: context.into(),
            source,
        }
    }
}

fraudlake_pipeline::from_lake_errors!(Error);

pub type Result<T, E = Error> = std::result::Result<T, E>;
