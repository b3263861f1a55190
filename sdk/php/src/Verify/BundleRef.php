<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Verify;

/** The bundle a signed command names: name, version and the SHA-256 of the bundle file. */
final class BundleRef
{
    private string $name;
    private string $version;
    private string $sha256;

    public function __construct(string $name, string $version, string $sha256)
    {
        $this->name = $name;
        $this->version = $version;
        $this->sha256 = $sha256;
    }

    public function name(): string
    {
        return $this->name;
    }

    public function version(): string
    {
        return $this->version;
    }

    /** Lower-case hex SHA-256 of the bundle file's bytes. */
    public function sha256(): string
    {
        return $this->sha256;
    }
}
