<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Http;

use Autoheal\Sdk\AutohealException;

/** No HTTP answer: the network, TLS, a timeout, or an answer over the size limit. */
final class TransportException extends AutohealException
{
}
