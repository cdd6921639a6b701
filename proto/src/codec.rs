//! Prost encoding with small codec buffers.
//!
//! tonic gives every stream an 8 KiB decode and an 8 KiB encode buffer up
//! front. A collector holds one stream per connected agent for hours, while
//! the messages on it are small (acknowledgements, batches of a few KiB), so
//! with 10,000 agents the defaults alone pin 160 MiB. These buffers start at
//! 1 KiB and still grow to any message up to the configured size limit.

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// First capacity of a stream's encode and decode buffers.
const BUFFER_BYTES: usize = 1024;
/// tonic's default: encoded messages are flushed once this much is buffered.
const YIELD_THRESHOLD: usize = 32 * 1024;

/// [`tonic_prost::ProstCodec`] with [`BUFFER_BYTES`] buffers.
#[derive(Debug, Clone, Copy)]
pub struct CompactCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for CompactCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

fn settings() -> BufferSettings {
    BufferSettings::new(BUFFER_BYTES, YIELD_THRESHOLD)
}

impl<T, U> Codec for CompactCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(settings())
    }
}
