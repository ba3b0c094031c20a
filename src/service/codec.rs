//! A protobuf codec for the decision services (ShouldRateLimit, ext_authz Check) whose decode
//! errors are `INVALID_ARGUMENT` naming the problem: tonic's stock prost codec reports bytes
//! that are not the message as `INTERNAL`, which blames the server for a client's request.

use prost::Message;
use std::marker::PhantomData;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

/// Encodes `E` and decodes `D` with prost; a malformed `D` is `INVALID_ARGUMENT`.
pub struct StrictCodec<E, D> {
    /// Only types: the codec holds no state.
    types: PhantomData<fn(E) -> D>,
}

impl<E, D> Default for StrictCodec<E, D> {
    fn default() -> Self {
        StrictCodec { types: PhantomData }
    }
}

/// The encoding half of [`StrictCodec`].
pub struct StrictEncoder<E> {
    /// Only the type.
    types: PhantomData<fn(E)>,
}

/// The decoding half of [`StrictCodec`].
pub struct StrictDecoder<D> {
    /// Only the type.
    types: PhantomData<fn() -> D>,
}

impl<E, D> Codec for StrictCodec<E, D>
where
    E: Message + Send + 'static,
    D: Message + Default + Send + 'static,
{
    type Encode = E;
    type Decode = D;
    type Encoder = StrictEncoder<E>;
    type Decoder = StrictDecoder<D>;

    fn encoder(&mut self) -> Self::Encoder {
        StrictEncoder { types: PhantomData }
    }

    fn decoder(&mut self) -> Self::Decoder {
        StrictDecoder { types: PhantomData }
    }
}

impl<E: Message> Encoder for StrictEncoder<E> {
    type Item = E;
    type Error = Status;

    fn encode(&mut self, item: E, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        // The buffer grows as needed, so this cannot fail in practice; never panic if it does.
        item.encode(buf)
            .map_err(|e| Status::internal(format!("cannot encode the response: {e}")))
    }
}

impl<D: Message + Default> Decoder for StrictDecoder<D> {
    type Item = D;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<D>, Status> {
        D::decode(buf).map(Some).map_err(|e| {
            Status::invalid_argument(format!(
                "malformed request: not a valid {}: {e}",
                std::any::type_name::<D>()
                    .rsplit("::")
                    .next()
                    .unwrap_or("message")
            ))
        })
    }
}
