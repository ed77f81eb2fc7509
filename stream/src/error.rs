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
}

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }

    pub fn kafka(context: impl Into<String>, source: KafkaError) -> Self {
        Error::Kafka {
            context: context.into(),
            source,
        }
    }
}

impl From<deltalake::DeltaTableError> for Error {
    fn from(e: deltalake::DeltaTableError) -> Self {
        Error::Lake(e.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
