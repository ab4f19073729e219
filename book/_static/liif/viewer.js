/* The live LIIF viewer: an image decoded in the page by the book's shipped model, at any scale
 * and any window, beside bicubic interpolation of the same view.
 *
 * A chapter embeds it as
 *
 *     <div class="liif-viewer" data-image="astronaut.png" data-scale="4" data-centre="-0.4,0.1"
 *          data-controls="zoom upload" data-fallback="fig-id"></div>
 *
 * data-image    the input, a file in _static/liif/images/ (made by the chapter at build time)
 * data-scale    the scale shown first; data-centre its centre (row, col) in [-1, 1]
 * data-view     the decoded view in output pixels, "height,width" (default 128,128)
 * data-controls any of: zoom (buttons and a scale slider), upload (the reader's own image),
 *               ensemble (local ensemble on/off), cell (the cell as a slider, x1 to x30)
 * data-fallback id of the chapter's pre-rendered figure: hidden once the live view is drawn,
 *               left in place, with one line saying why, when the live view cannot run
 *
 * The model is ONNX, exported from the shipped weights when the book is built
 * (liif_core.export, into _static/liif/models/): encoder.onnx maps the image (1, 3, h, w) in
 * [0, 1] to a table (h, w, D), the first decoder layer applied to every code's 3x3
 * neighbourhood; decoder.onnx (and decoder_no_ensemble.onnx) map the table and Q queries
 * (coord, cell), (Q, 2) each, to RGB (Q, 3) in [0, 1]. They run in ONNX Runtime Web
 * (_static/ort/, fetched by scripts/book_assets.sh) in wasm, on several threads when the page
 * is cross-origin isolated (served by `make serve`) and on one thread otherwise; with ?webgpu
 * in the page's URL, on WebGPU where the browser offers an adapter (see WEBGPU below), falling
 * back to wasm when the adapter or the session fails.
 *
 * A view is what liif_core.render(model, lr, scale=s, window=(top, left, height, width))
 * decodes: the output grid is (H, W) = (round(h s), round(w s)), the window spans rows
 * -1 + 2 top / H to -1 + 2 (top + height) / H (columns alike), queries sit at the pixel
 * centres make_coord computes (in float32, the same operations), and the cell is (2/H, 2/W).
 *
 * Test hook: window.liifViewers lists the viewers of the page in order. Each has
 *   ready             a Promise, resolved when the model has encoded the image and the first
 *                     view is drawn (rejected with the reason the page shows when the live
 *                     view cannot run); the viewer starts when it is scrolled near the screen
 *   setView({scale, top, left})   show that view (top, left in output pixels; any values)
 *   setEnsemble(on), setCellScale(s or null: the true cell)
 *   whenIdle()        a Promise resolved when no decode is running or waiting
 *   decodeRaw({scale, top, left, height, width, ensemble, cell})   a Promise of the decoded
 *                     window as a Float32Array of height * width * 3 RGB in [0, 1], row-major;
 *                     cell (2 numbers) defaults to (2/H, 2/W), ensemble to true
 *   lastDecode        {view: {scale, top, left, height, width, cell, ensemble}, rgb} of the
 *                     last full view drawn (rgb as decodeRaw returns it)
 *   canvas, bicubicCanvas   the two views (canvas pixels are round(255 rgb))
 *   timings           {encode, preview, full} in ms of the last of each, with the queries
 *   backend           'webgpu' or 'wasm, N thread(s)'
 *   input             {height, width} of the encoded image
 */
(function () {
    'use strict';

    var SCRIPT = document.currentScript.src;
    var LIIF_DIR = SCRIPT.replace(/[^/]*$/, '');  // .../_static/liif/
    var ORT_DIR = LIIF_DIR + '../ort/';
    var MODEL_DIR = LIIF_DIR + 'models/';
    var IMAGE_DIR = LIIF_DIR + 'images/';
    var MIN_SCALE = 1;
    var MAX_SCALE = 64;
    // The reader's image is reduced to this longer side first: the encoder's cost grows with the
    // pixels, about 4 s for 160 x 160 on one wasm thread.
    var MAX_INPUT = 160;
    // Queries per decoder run. Between runs the page handles input and drops a stale view.
    var CHUNK = 8192;
    // The coarse preview decodes every PREVIEW-th pixel of each axis (1/16 of the queries).
    var PREVIEW = 4;
    var CELL_SCALES = [1, 30];  // the cell slider's range, as the scale whose cell it is
    // WebGPU only on request (a page URL with ?webgpu): ONNX Runtime Web 1.31.1's WebGPU build
    // has no kernel for the float64 Cast nodes of the decoder graph ("Could not find an
    // implementation for Cast(13)"), so today it would download 28.8 MB to fall back to wasm.
    var WEBGPU = /[?&]webgpu\b/.test(location.search);

    // -- the runtime, shared by all viewers of a page --------------------------------------

    var runtime = null;  // Promise of {backend, session(name)}
    var queue = Promise.resolve();  // one ONNX run at a time: a session cannot run twice at once

    function exclusive(job) {
        var result = queue.then(job);
        queue = result.catch(function () {});
        return result;
    }

    function loadScript(src) {
        return new Promise(function (resolve, reject) {
            var script = document.createElement('script');
            script.src = src;
            script.onload = resolve;
            script.onerror = function () { reject(new Error('could not load ' + src)); };
            document.head.appendChild(script);
        });
    }

    function gpuAdapter() {
        if (!navigator.gpu) return Promise.resolve(null);
        return navigator.gpu.requestAdapter().catch(function () { return null; });
    }

    function startRuntime() {
        if (location.protocol === 'file:') {
            return Promise.reject(new Error(
                'the live view needs the book served over HTTP (browsers block it from file://):' +
                ' run make serve and open http://127.0.0.1:8000/'));
        }
        return (WEBGPU ? gpuAdapter() : Promise.resolve(null)).then(function (adapter) {
            if (!adapter) return startWith('wasm');
            return startWith('webgpu').catch(function (error) {
                console.warn('LIIF viewer: WebGPU failed (' + error.message + '); using wasm');
                return startWith('wasm');
            });
        });
    }

    function startWith(backend) {
        var bundle = backend === 'webgpu' ? 'ort.webgpu.min.js' : 'ort.wasm.min.js';
        return loadScript(ORT_DIR + bundle).then(function () {
            var ort = window.ort;
            ort.env.logLevel = 'error';
            ort.env.wasm.wasmPaths = ORT_DIR;
            var threads = window.crossOriginIsolated ?
                Math.min(navigator.hardwareConcurrency || 1, 8) : 1;
            ort.env.wasm.numThreads = threads;
            var sessions = {};
            function session(name) {
                if (!sessions[name]) {
                    sessions[name] = ort.InferenceSession.create(MODEL_DIR + name + '.onnx', {
                        // Nodes WebGPU cannot run fall back to wasm inside the session.
                        executionProviders: backend === 'webgpu' ? ['webgpu', 'wasm'] : ['wasm'],
                        graphOptimizationLevel: 'all',
                    });
                }
                return sessions[name];
            }
            // The decoder is created now so that a backend that cannot run it fails here.
            return session('decoder').then(function () {
                return {
                    ort: ort, session: session,
                    backend: backend === 'webgpu' ? 'WebGPU' :
                        'wasm, ' + threads + (threads === 1 ? ' thread' : ' threads'),
                };
            });
        });
    }

    function getRuntime() {
        if (!runtime) runtime = startRuntime();
        return runtime;
    }

    // -- geometry: the same numbers as liif_core.render and make_coord -------------------

    function roundHalfEven(x) {  // Python's round(), as output_size uses
        var r = Math.round(x);
        return (Math.abs(x % 1) === 0.5 && r % 2 !== 0) ? r - 1 : r;
    }

    function outputSize(h, w, scale) {
        return [Math.max(1, roundHalfEven(h * scale)), Math.max(1, roundHalfEven(w * scale))];
    }

    // Pixel centres of n cells over (v0, v1) in float32: start and step rounded once, then one
    // float32 multiply and one float32 add, as make_coord does.
    function centres(n, v0, v1) {
        var r = (v1 - v0) / (2 * n);
        var step = Math.fround(2 * r), start = Math.fround(v0 + r);
        var out = new Float32Array(n);
        for (var i = 0; i < n; i++) out[i] = Math.fround(Math.fround(i * step) + start);
        return out;
    }

    // The queries of a window (top, left, height, width) of the (H, W) output, every
    // `stride`-th pixel: coord (Q, 2) row-major as (row, col), and the rows' and columns'
    // centres for bicubic.
    function windowQueries(H, W, top, left, height, width, stride) {
        var rows = Math.ceil(height / stride), cols = Math.ceil(width / stride);
        var rc = centres(rows, -1 + 2 * top / H, -1 + 2 * (top + rows * stride) / H);
        var cc = centres(cols, -1 + 2 * left / W, -1 + 2 * (left + cols * stride) / W);
        var coord = new Float32Array(rows * cols * 2);
        for (var i = 0, k = 0; i < rows; i++) {
            for (var j = 0; j < cols; j++, k += 2) {
                coord[k] = rc[i];
                coord[k + 1] = cc[j];
            }
        }
        return {rows: rows, cols: cols, coord: coord, rowCentres: rc, colCentres: cc};
    }

    // -- bicubic of the same view (Keys, a = -0.5, border pixels repeated) ----------------

    function cubic(t) {
        var a = -0.5;
        t = Math.abs(t);
        if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
        if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
        return 0;
    }

    // Tap indices and weights of every centre (coordinate in [-1, 1]) on an axis of n pixels.
    function taps(centresOnAxis, n) {
        return Array.prototype.map.call(centresOnAxis, function (c) {
            var x = (c + 1) * n / 2 - 0.5, base = Math.floor(x);
            var index = [], weight = [];
            for (var d = -1; d <= 2; d++) {
                index.push(Math.min(n - 1, Math.max(0, base + d)));
                weight.push(cubic(x - base - d));
            }
            return {index: index, weight: weight};
        });
    }

    function bicubic(image, q) {  // image: {height, width, rgba}; -> ImageData of the view
        var out = new ImageData(q.cols, q.rows);
        var ty = taps(q.rowCentres, image.height), tx = taps(q.colCentres, image.width);
        for (var i = 0; i < q.rows; i++) {
            for (var j = 0; j < q.cols; j++) {
                var o = 4 * (i * q.cols + j);
                for (var ch = 0; ch < 3; ch++) {
                    var sum = 0;
                    for (var a = 0; a < 4; a++) {
                        var row = ty[i].index[a] * image.width;
                        for (var b = 0; b < 4; b++) {
                            sum += ty[i].weight[a] * tx[j].weight[b] *
                                image.rgba[4 * (row + tx[j].index[b]) + ch];
                        }
                    }
                    out.data[o + ch] = sum;  // Uint8ClampedArray: rounded and clamped
                }
                out.data[o + 3] = 255;
            }
        }
        return out;
    }

    function toImageData(rgb, rows, cols) {
        var out = new ImageData(cols, rows);
        for (var k = 0, n = rows * cols; k < n; k++) {
            out.data[4 * k] = Math.round(rgb[3 * k] * 255);
            out.data[4 * k + 1] = Math.round(rgb[3 * k + 1] * 255);
            out.data[4 * k + 2] = Math.round(rgb[3 * k + 2] * 255);
            out.data[4 * k + 3] = 255;
        }
        return out;
    }

    // -- images ------------------------------------------------------------------------------

    // RGBA bytes of a drawable (image, bitmap) at (height, width), over white where it is
    // transparent.
    function pixels(drawable, height, width) {
        var canvas = document.createElement('canvas');
        canvas.width = width;
        canvas.height = height;
        var context = canvas.getContext('2d', {willReadFrequently: true});
        context.fillStyle = '#fff';
        context.fillRect(0, 0, width, height);
        context.imageSmoothingQuality = 'high';
        context.drawImage(drawable, 0, 0, width, height);
        return {height: height, width: width, rgba: context.getImageData(0, 0, width, height).data};
    }

    function loadImage(url) {
        return new Promise(function (resolve, reject) {
            var img = new Image();
            img.onload = function () {
                try {  // reading the pixels back throws where the page may not (file://)
                    resolve(pixels(img, img.naturalHeight, img.naturalWidth));
                } catch (error) {
                    reject(error);
                }
            };
            img.onerror = function () { reject(new Error('could not load ' + url)); };
            img.src = url;
        });
    }

    // (1, 3, h, w) float32 in [0, 1], channel planes, from RGBA bytes.
    function planes(image) {
        var n = image.height * image.width, out = new Float32Array(3 * n);
        for (var k = 0; k < n; k++) {
            out[k] = image.rgba[4 * k] / 255;
            out[n + k] = image.rgba[4 * k + 1] / 255;
            out[2 * n + k] = image.rgba[4 * k + 2] / 255;
        }
        return out;
    }

    function formatMs(ms) {
        return ms < 1000 ? Math.round(ms) + ' ms' : (ms / 1000).toFixed(2) + ' s';
    }

    function element(tag, className, parent, text) {
        var el = document.createElement(tag);
        if (className) el.className = className;
        if (text) el.textContent = text;
        if (parent) parent.appendChild(el);
        return el;
    }

    // -- the viewer ----------------------------------------------------------------------

    function Viewer(root) {
        var data = root.dataset;
        var view = (data.view || '128,128').split(',').map(Number);
        var centre = (data.centre || '0,0').split(',').map(Number);
        this.root = root;
        this.controls = (data.controls || 'zoom').split(/\s+/);
        this.viewHeight = view[0];
        this.viewWidth = view[1];
        this.initialScale = Number(data.scale || 4);
        this.initialCentre = centre;
        this.fallback = data.fallback ? document.getElementById(data.fallback) : null;
        this.ensemble = true;
        this.cellScale = null;  // null: the true cell of the view's scale
        this.timings = {};
        this.image = null;  // {height, width, rgba}
        this.table = null;  // ort.Tensor (h, w, D)
        this.pending = false;
        this.running = false;
        this.idleWaiters = [];
        this.build();
        // The runtime and the model (about 20 MB) load when the viewer comes near the screen.
        var self = this, begin;
        this.ready = new Promise(function (resolve, reject) {
            begin = function () { self.start(IMAGE_DIR + data.image).then(resolve, reject); };
        });
        this.ready.catch(function () {});  // the page shows the reason; nothing is unhandled
        var near = new IntersectionObserver(function (entries) {
            if (entries.some(function (entry) { return entry.isIntersecting; })) {
                near.disconnect();
                begin();
            }
        }, {rootMargin: '400px'});
        near.observe(root);
    }

    Viewer.prototype.build = function () {
        var self = this, root = this.root;
        root.classList.add('liif-viewer--loading');
        this.status = element('p', 'liif-viewer__status', root,
            'Loading the live view: the model and ONNX Runtime (21 MB, once)…');
        var panes = element('div', 'liif-viewer__panes', root);
        function pane(label) {
            var box = element('div', 'liif-viewer__pane', panes);
            var canvas = element('canvas', 'liif-viewer__canvas', box);
            canvas.width = self.viewWidth;
            canvas.height = self.viewHeight;
            canvas.tabIndex = 0;
            canvas.setAttribute('role', 'img');
            canvas.setAttribute('aria-label', label + ' view; drag or arrow keys to pan, ' +
                'wheel, pinch or + and - to zoom');
            element('div', 'liif-viewer__label', box, label);
            return canvas;
        }
        this.canvas = pane('LIIF (the shipped weights)');
        this.bicubicCanvas = pane('bicubic');
        this.readout = element('p', 'liif-viewer__readout', root);
        var bar = element('div', 'liif-viewer__controls', root);
        if (this.has('zoom')) this.buildZoom(bar);
        if (this.has('ensemble')) this.buildEnsemble(bar);
        if (this.has('cell')) this.buildCell(bar);
        if (this.has('upload')) this.buildUpload(bar);
        [this.canvas, this.bicubicCanvas].forEach(function (canvas) { self.listen(canvas); });
    };

    Viewer.prototype.has = function (control) { return this.controls.indexOf(control) >= 0; };

    Viewer.prototype.buildZoom = function (bar) {
        var self = this;
        function button(text, label, factor) {
            var b = element('button', 'liif-viewer__button', bar, text);
            b.type = 'button';
            b.setAttribute('aria-label', label);
            b.addEventListener('click', function () { self.zoomBy(factor); });
        }
        button('−', 'zoom out', 1 / 1.25);
        var slider = element('input', 'liif-viewer__scale', bar);
        slider.type = 'range';
        slider.min = String(Math.log(MIN_SCALE));
        slider.max = String(Math.log(MAX_SCALE));
        slider.step = 'any';
        slider.setAttribute('aria-label', 'scale (logarithmic)');
        slider.addEventListener('input', function () {
            self.zoomTo(Math.exp(Number(slider.value)));
        });
        this.scaleSlider = slider;
        button('+', 'zoom in', 1.25);
    };

    Viewer.prototype.buildEnsemble = function (bar) {
        var self = this;
        var label = element('label', 'liif-viewer__toggle', bar);
        var box = element('input', '', label);
        box.type = 'checkbox';
        box.checked = true;
        label.appendChild(document.createTextNode(' local ensemble'));
        box.addEventListener('change', function () { self.setEnsemble(box.checked); });
        this.ensembleBox = box;
    };

    Viewer.prototype.buildCell = function (bar) {
        var self = this;
        var label = element('label', 'liif-viewer__cell', bar, 'cell of × ');
        var slider = element('input', 'liif-viewer__cell-slider', label);
        slider.type = 'range';
        slider.min = String(Math.log(CELL_SCALES[0]));
        slider.max = String(Math.log(CELL_SCALES[1]));
        slider.step = 'any';
        slider.value = String(Math.log(this.initialScale));
        slider.setAttribute('aria-label', 'the cell told to the decoder, as the scale it belongs to');
        slider.addEventListener('input', function () {
            self.setCellScale(Math.exp(Number(slider.value)));
        });
        this.cellSlider = slider;
        this.cellScale = this.initialScale;
    };

    Viewer.prototype.buildUpload = function (bar) {
        var self = this;
        var label = element('label', 'liif-viewer__upload', bar, 'Your image: ');
        var input = element('input', '', label);
        input.type = 'file';
        input.accept = 'image/*';
        input.addEventListener('change', function () {
            if (input.files.length) self.upload(input.files[0]);
        });
        this.root.addEventListener('dragover', function (event) { event.preventDefault(); });
        this.root.addEventListener('drop', function (event) {
            event.preventDefault();
            if (event.dataTransfer.files.length) self.upload(event.dataTransfer.files[0]);
        });
        this.uploadNote = element('p', 'liif-viewer__note', this.root);
    };

    // Drag and arrow keys pan; wheel, pinch and +/- zoom about the pointer (keys: the centre).
    Viewer.prototype.listen = function (canvas) {
        var self = this, pointers = {};
        function toView(event) {  // a point of the canvas in view pixels
            var box = canvas.getBoundingClientRect();
            return [(event.clientY - box.top) * canvas.height / box.height,
                    (event.clientX - box.left) * canvas.width / box.width];
        }
        function spread() {
            var p = Object.keys(pointers).map(function (id) { return pointers[id]; });
            if (p.length < 2) return null;
            return {distance: Math.hypot(p[0][0] - p[1][0], p[0][1] - p[1][1]),
                    middle: [(p[0][0] + p[1][0]) / 2, (p[0][1] + p[1][1]) / 2]};
        }
        canvas.addEventListener('pointerdown', function (event) {
            canvas.setPointerCapture(event.pointerId);
            pointers[event.pointerId] = toView(event);
        });
        canvas.addEventListener('pointermove', function (event) {
            if (!(event.pointerId in pointers)) return;
            var before = spread(), point = toView(event), last = pointers[event.pointerId];
            pointers[event.pointerId] = point;
            var after = spread();
            if (before && after) {
                self.zoomTo(self.scale * after.distance / before.distance, after.middle);
            } else if (!before) {
                self.panBy(point[0] - last[0], point[1] - last[1]);
            }
        });
        function release(event) { delete pointers[event.pointerId]; }
        canvas.addEventListener('pointerup', release);
        canvas.addEventListener('pointercancel', release);
        canvas.addEventListener('wheel', function (event) {
            event.preventDefault();
            self.zoomTo(self.scale * Math.exp(-event.deltaY * 0.002), toView(event));
        }, {passive: false});
        canvas.addEventListener('keydown', function (event) {
            var step = 16, moves = {ArrowUp: [step, 0], ArrowDown: [-step, 0],
                                    ArrowLeft: [0, step], ArrowRight: [0, -step]};
            if (moves[event.key]) {
                self.panBy(moves[event.key][0], moves[event.key][1]);
            } else if (event.key === '+' || event.key === '=') {
                self.zoomBy(1.25);
            } else if (event.key === '-' || event.key === '_') {
                self.zoomBy(1 / 1.25);
            } else {
                return;
            }
            event.preventDefault();
        });
    };

    Viewer.prototype.start = function (imageUrl) {
        var self = this;
        return Promise.all([getRuntime(), loadImage(imageUrl)]).then(function (loaded) {
            self.runtime = loaded[0];
            self.backend = self.runtime.backend;
            var encoded = self.encode(loaded[1]);
            // Bicubic shows at once, and the view can move, while the encoder runs.
            self.root.classList.remove('liif-viewer--loading');
            self.status.textContent = '';
            var H = outputSize(self.image.height, self.image.width, self.initialScale);
            self.setView({
                scale: self.initialScale,
                top: (self.initialCentre[0] + 1) * H[0] / 2 - self.viewHeight / 2,
                left: (self.initialCentre[1] + 1) * H[1] / 2 - self.viewWidth / 2,
            });
            return encoded.then(function () { return self.whenIdle(); });
        }).then(function () {
            // The whole notebook cell that drew the frames (its code toggle too).
            if (self.fallback) (self.fallback.closest('div.cell') || self.fallback).hidden = true;
        }, function (error) {
            self.root.classList.remove('liif-viewer--loading');
            self.root.classList.add('liif-viewer--failed');
            self.status.textContent = 'No live view here: ' + error.message +
                (self.fallback ? '. The frames below are pre-rendered.' : '.');
            throw error;
        });
    };

    // Make `image` the viewer's input: bicubic views of it at once, LIIF views once the
    // encoder's table is there (this.encoded, which decodes wait for).
    Viewer.prototype.encode = function (image) {
        var self = this, ort = this.runtime.ort;
        var started = performance.now();
        this.image = image;
        this.input = {height: image.height, width: image.width};
        this.table = null;
        this.canvas.getContext('2d').clearRect(0, 0, this.canvas.width, this.canvas.height);
        this.encoded = exclusive(function () {
            return self.runtime.session('encoder').then(function (encoder) {
                var input = new ort.Tensor('float32', planes(image), [1, 3, image.height, image.width]);
                return encoder.run({image: input});
            });
        }).then(function (out) {
            if (self.image === image) self.table = out.table;  // else a newer image came
            self.timings.encode = {ms: performance.now() - started,
                                   pixels: image.height * image.width};
        });
        return this.encoded;
    };

    Viewer.prototype.upload = function (file) {
        var self = this;
        this.uploadNote.textContent = 'Encoding ' + file.name + '…';
        return createImageBitmap(file).then(function (bitmap) {
            var h = bitmap.height, w = bitmap.width, longer = Math.max(h, w);
            var note = '';
            if (longer > MAX_INPUT) {
                var f = MAX_INPUT / longer;
                note = ' Reduced from ' + w + ' × ' + h + ' first: the encoder runs in this ' +
                    'page, and takes seconds for ' + MAX_INPUT + ' pixels a side.';
                h = Math.max(1, Math.round(h * f));
                w = Math.max(1, Math.round(w * f));
            }
            var encoded = self.encode(pixels(bitmap, h, w));
            // The whole image fills the view.
            self.zoomTo(Math.min(MAX_SCALE, Math.max(MIN_SCALE,
                Math.min(self.viewHeight / h, self.viewWidth / w))), null, [0, 0]);
            return encoded.then(function () {
                self.uploadNote.textContent = file.name + ': ' + w + ' × ' + h + ' pixels, ' +
                    'encoded in ' + formatMs(self.timings.encode.ms) + '.' + note;
            });
        }).catch(function (error) {
            self.uploadNote.textContent = 'Could not read ' + file.name + ': ' + error.message;
        });
    };

    // -- view state ------------------------------------------------------------------------

    Viewer.prototype.setView = function (view) {
        this.scale = view.scale;
        this.top = view.top;
        this.left = view.left;
        if (this.scaleSlider) this.scaleSlider.value = String(Math.log(view.scale));
        this.request();
    };

    Viewer.prototype.setEnsemble = function (on) {
        this.ensemble = on;
        if (this.ensembleBox) this.ensembleBox.checked = on;
        this.request();
    };

    Viewer.prototype.setCellScale = function (scale) {
        this.cellScale = scale;
        if (this.cellSlider && scale) this.cellSlider.value = String(Math.log(scale));
        this.request();
    };

    // Zoom to `scale` keeping the point `anchor` of the view (default its centre) in place, or
    // putting the image point `centre` (row, col in [-1, 1]) at the view's centre.
    Viewer.prototype.zoomTo = function (scale, anchor, centre) {
        if (!this.image) return;
        scale = Math.min(MAX_SCALE, Math.max(MIN_SCALE, scale));
        anchor = anchor || [this.viewHeight / 2, this.viewWidth / 2];
        var before = outputSize(this.image.height, this.image.width, this.scale);
        var after = outputSize(this.image.height, this.image.width, scale);
        var u = centre || [-1 + 2 * (this.top + anchor[0]) / before[0],
                           -1 + 2 * (this.left + anchor[1]) / before[1]];
        this.setView({scale: scale,
                      top: (u[0] + 1) * after[0] / 2 - anchor[0],
                      left: (u[1] + 1) * after[1] / 2 - anchor[1]});
    };

    Viewer.prototype.zoomBy = function (factor) { this.zoomTo(this.scale * factor); };

    // Pan by (dy, dx) view pixels; the view's centre stays on the image.
    Viewer.prototype.panBy = function (dy, dx) {
        if (!this.image) return;
        var size = outputSize(this.image.height, this.image.width, this.scale);
        var top = this.top - dy, left = this.left - dx;
        top = Math.min(size[0] - this.viewHeight / 2, Math.max(-this.viewHeight / 2, top));
        left = Math.min(size[1] - this.viewWidth / 2, Math.max(-this.viewWidth / 2, left));
        this.setView({scale: this.scale, top: top, left: left});
    };

    // -- decoding --------------------------------------------------------------------------

    // Decode the queries of q on the current table: a Float32Array (Q * 3), or null when a newer
    // view was asked for meanwhile (`stale` is checked between chunks).
    Viewer.prototype.decodeQueries = function (q, cell, ensemble, stale) {
        var self = this, ort = this.runtime.ort;
        var name = ensemble ? 'decoder' : 'decoder_no_ensemble';
        var count = q.coord.length / 2, rgb = new Float32Array(count * 3);
        var table;
        function chunk(start) {
            if (start >= count) return Promise.resolve(rgb);
            if (stale && stale()) return Promise.resolve(null);
            var n = Math.min(CHUNK, count - start);
            var cells = new Float32Array(n * 2);
            for (var k = 0; k < n; k++) {
                cells[2 * k] = cell[0];
                cells[2 * k + 1] = cell[1];
            }
            return exclusive(function () {
                return self.runtime.session(name).then(function (decoder) {
                    return decoder.run({
                        table: table,
                        coord: new ort.Tensor('float32', q.coord.slice(2 * start, 2 * (start + n)), [n, 2]),
                        cell: new ort.Tensor('float32', cells, [n, 2]),
                    });
                });
            }).then(function (out) {
                rgb.set(out.rgb.data, 3 * start);
                return chunk(start + n);
            });
        }
        return this.whenEncoded().then(function () {
            table = self.table;
            return chunk(0);
        });
    };

    // A Promise resolved when the latest image given to encode() is encoded.
    Viewer.prototype.whenEncoded = function () {
        var self = this, encoded = this.encoded;
        return encoded.then(function () {
            return self.encoded === encoded ? undefined : self.whenEncoded();
        });
    };

    // The cell of a view at `scale`: the true one, or the cell slider's.
    Viewer.prototype.cellOf = function (size) {
        if (!this.cellScale) return [2 / size[0], 2 / size[1]];
        return [2 / (this.image.height * this.cellScale), 2 / (this.image.width * this.cellScale)];
    };

    Viewer.prototype.decodeRaw = function (view) {
        var self = this;
        return this.ready.then(function () {
            var size = outputSize(self.image.height, self.image.width, view.scale);
            var q = windowQueries(size[0], size[1], view.top, view.left, view.height, view.width, 1);
            var cell = view.cell || [2 / size[0], 2 / size[1]];
            return self.decodeQueries(q, cell, view.ensemble !== false, null);
        });
    };

    Viewer.prototype.request = function () {
        if (!this.image) return;
        this.pending = true;
        if (!this.running) this.pump();
    };

    Viewer.prototype.whenIdle = function () {
        var self = this;
        if (!this.running && !this.pending) return Promise.resolve();
        return new Promise(function (resolve) { self.idleWaiters.push(resolve); });
    };

    // Decode the latest view: bicubic at once, then the coarse preview, then the full view. A
    // view asked for meanwhile replaces the one being decoded (latest wins).
    Viewer.prototype.pump = function () {
        var self = this;
        function stale() { return self.pending; }
        if (!this.pending) {
            this.running = false;
            this.idleWaiters.splice(0).forEach(function (resolve) { resolve(); });
            return;
        }
        this.running = true;
        this.pending = false;
        var scale = this.scale, size = outputSize(this.image.height, this.image.width, scale);
        var cell = this.cellOf(size), ensemble = this.ensemble;
        var view = [this.top, this.left, this.viewHeight, this.viewWidth];
        var full = windowQueries(size[0], size[1], view[0], view[1], view[2], view[3], 1);
        var coarse = windowQueries(size[0], size[1], view[0], view[1], view[2], view[3], PREVIEW);
        this.bicubicCanvas.getContext('2d').putImageData(bicubic(this.image, full), 0, 0);
        this.showReadout(size, cell, this.table ? null : 'encoding');
        var started;
        this.whenEncoded().then(function () {
            started = performance.now();
            return self.decodeQueries(coarse, cell, ensemble, stale);
        }).then(function (rgb) {
            if (!rgb) return null;
            self.timings.preview = {ms: performance.now() - started, queries: rgb.length / 3};
            self.drawPreview(toImageData(rgb, coarse.rows, coarse.cols));
            self.showReadout(size, cell, 'preview');
            started = performance.now();
            return self.decodeQueries(full, cell, ensemble, stale);
        }).then(function (rgb) {
            if (!rgb) return;
            self.timings.full = {ms: performance.now() - started, queries: rgb.length / 3};
            self.lastDecode = {rgb: rgb, view: {scale: scale, top: view[0], left: view[1],
                                                height: view[2], width: view[3], cell: cell,
                                                ensemble: ensemble}};
            self.canvas.getContext('2d').putImageData(toImageData(rgb, full.rows, full.cols), 0, 0);
            self.showReadout(size, cell, 'full');
        }).catch(function (error) {
            self.status.textContent = 'Decoding failed: ' + error.message;
            console.error(error);
        }).then(function () { self.pump(); });
    };

    Viewer.prototype.drawPreview = function (imageData) {
        var small = document.createElement('canvas');
        small.width = imageData.width;
        small.height = imageData.height;
        small.getContext('2d').putImageData(imageData, 0, 0);
        var context = this.canvas.getContext('2d');
        context.imageSmoothingEnabled = false;
        context.drawImage(small, 0, 0, this.canvas.width, this.canvas.height);
    };

    Viewer.prototype.showReadout = function (size, cell, stage) {
        var t = this.timings, cellScale = 2 / (this.image.height * cell[0]);
        var parts = ['×' + this.scale.toFixed(2) + ' (' + size[1] + ' × ' + size[0] + ' output)',
                     'cell of ×' + cellScale.toFixed(2)];
        if (!this.ensemble) parts.push('no local ensemble');
        if (stage === null) parts.push('decoding…');
        if (stage === 'encoding') parts.push('encoding the image in the page…');
        if (stage && t.preview) parts.push('preview ' + formatMs(t.preview.ms));
        if (stage === 'full') {
            parts.push(this.viewWidth + ' × ' + this.viewHeight + ' in ' + formatMs(t.full.ms));
        }
        parts.push(this.backend);
        this.readout.textContent = parts.join(' · ');
    };

    function init() {
        var roots = document.querySelectorAll('div.liif-viewer');
        window.liifViewers = Array.prototype.map.call(roots, function (root) {
            return new Viewer(root);
        });
    }

    if (document.readyState === 'loading') {
        document.addEventListener('DOMContentLoaded', init);
    } else {
        init();
    }
})();
