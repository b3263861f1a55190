<?php

declare(strict_types=1);

// The few WordPress functions the SDK's WordPress classes call, in the global namespace
// as WordPress defines them. They record calls and answer what a test queued, so the
// WordPress adapters are tested without WordPress.

namespace {
    if (!class_exists('WP_Error')) {
        class WP_Error
        {
            private string $message;

            public function __construct(string $code = '', string $message = '')
            {
                $this->message = $message;
            }

            public function get_error_message(): string
            {
                return $this->message;
            }
        }
    }

    /** Test state: queued HTTP answers, recorded calls, options. */
    final class WordPressStub
    {
        /** @var list<array<string, mixed>|WP_Error> */
        public static array $responses = [];
        /** @var list<array{function: string, url: string, args: array<string, mixed>}> */
        public static array $calls = [];
        /** @var array<string, mixed> */
        public static array $options = [];
        /** @var array<string, list<callable>> */
        public static array $actions = [];

        public static function reset(): void
        {
            self::$responses = [];
            self::$calls = [];
            self::$options = [];
            self::$actions = [];
        }

        public static function fire(string $hook, ...$args): void
        {
            foreach (self::$actions[$hook] ?? [] as $callback) {
                $callback(...$args);
            }
        }

        /** @param array<string, mixed> $args */
        public static function http(string $function, string $url, array $args)
        {
            self::$calls[] = ['function' => $function, 'url' => $url, 'args' => $args];
            if (self::$responses === []) {
                return new WP_Error('http_request_failed', 'no stub response queued');
            }
            return array_shift(self::$responses);
        }
    }

    if (!function_exists('wp_remote_request')) {
        function wp_remote_request($url, $args = [])
        {
            return WordPressStub::http('wp_remote_request', $url, $args);
        }

        function wp_remote_get($url, $args = [])
        {
            return WordPressStub::http('wp_remote_get', $url, $args);
        }

        function wp_remote_post($url, $args = [])
        {
            return WordPressStub::http('wp_remote_post', $url, $args);
        }

        function is_wp_error($thing)
        {
            return $thing instanceof WP_Error;
        }

        function wp_remote_retrieve_response_code($response)
        {
            return is_array($response) ? ($response['response']['code'] ?? '') : '';
        }

        function wp_remote_retrieve_headers($response)
        {
            return is_array($response) ? ($response['headers'] ?? []) : [];
        }

        function wp_remote_retrieve_body($response)
        {
            return is_array($response) ? ($response['body'] ?? '') : '';
        }

        function get_option($name, $default = false)
        {
            return array_key_exists($name, WordPressStub::$options) ? WordPressStub::$options[$name] : $default;
        }

        function add_action($hook, $callback, $priority = 10, $args = 1)
        {
            WordPressStub::$actions[$hook][] = $callback;
            return true;
        }

        function add_filter($hook, $callback, $priority = 10, $args = 1)
        {
            return add_action($hook, $callback, $priority, $args);
        }

        function wp_next_scheduled($hook)
        {
            return WordPressStub::$options['_cron'][$hook] ?? false;
        }

        function wp_schedule_event($timestamp, $recurrence, $hook)
        {
            WordPressStub::$options['_cron'][$hook] = $recurrence;
            return true;
        }

        function update_option($name, $value, $autoload = null)
        {
            $changed = !array_key_exists($name, WordPressStub::$options) || WordPressStub::$options[$name] !== $value;
            WordPressStub::$options[$name] = $value;
            return $changed;
        }
    }
}
